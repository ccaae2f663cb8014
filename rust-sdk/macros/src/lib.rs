//! The `#[tether::interface]` attribute: one declaration of an interface gives the plugin author
//! a trait to implement, a server adapter that dispatches `<interface>.<method>` with typed params
//! and reports each version's method schemas, and a typed client for the calling side.
//!
//! ```ignore
//! #[tether::interface(name = "kv", versions = [1, 2])]
//! pub trait Kv {
//!     /// Stores a value.
//!     async fn put(&self, params: PutParams) -> Result<Empty, tether::Error>;
//!     /// Reads a value.
//!     async fn get(&self, params: KeyParams, cx: tether::RequestContext) -> Result<GetResult, tether::Error>;
//!     /// Removes a key (version 2 on).
//!     #[since(2)]
//!     async fn delete(&self, params: KeyParams) -> Result<DeleteResult, tether::Error>;
//! }
//! ```
//!
//! generates the trait `Kv` (each method returns a `Send` future; implement it with `async fn`),
//! `KvServer<T: Kv>` (an `InterfaceServer`) and `KvClient` (a `Client` whose methods return a
//! `tether::Call`). A method takes `&self`, a params type, and optionally the request context.
//!
//! The generated code names the crate the attribute was reached through, by its hidden
//! `__private` module: `#[tether::interface]` (plugins), `#[tether_host::interface]` (hosts) and
//! `#[tether_core::interface]` are the same attribute with a different root. A crate that
//! renamed its dependency says where to look with `crate = path` (`crate = ::my_tether`).

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{
    Error, Expr, ExprArray, FnArg, GenericArgument, ItemTrait, Lit, LitStr, PathArguments, ReturnType,
    TraitItem, Type,
};

/// Declares a Tether interface for users of the plugin SDK (`tether`); see the crate
/// documentation.
#[proc_macro_attribute]
pub fn interface(attr: TokenStream, item: TokenStream) -> TokenStream {
    run(quote!(::tether), attr, item)
}

/// The same attribute for users of the host crate: re-exported as `tether_host::interface`.
#[proc_macro_attribute]
pub fn host_interface(attr: TokenStream, item: TokenStream) -> TokenStream {
    run(quote!(::tether_host), attr, item)
}

/// The same attribute for users of the connection crate: re-exported as
/// `tether_core::interface`.
#[proc_macro_attribute]
pub fn core_interface(attr: TokenStream, item: TokenStream) -> TokenStream {
    run(quote!(::tether_core), attr, item)
}

fn run(root: TokenStream2, attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(root, attr.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct Method {
    ident: syn::Ident,
    attrs: Vec<syn::Attribute>,
    params_pat: Box<syn::Pat>,
    params_ty: Box<Type>,
    cx: Option<(Box<syn::Pat>, Box<Type>)>,
    output: Type,
    result_ty: Type,
    since: u32,
}

fn expand(root: TokenStream2, attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let mut root = root;
    let mut name: Option<LitStr> = None;
    let mut versions: Vec<u32> = Vec::new();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            name = Some(meta.value()?.parse()?);
            Ok(())
        } else if meta.path.is_ident("versions") {
            let array: ExprArray = meta.value()?.parse()?;
            for elem in array.elems {
                versions.push(int_of(&elem)?);
            }
            Ok(())
        } else if meta.path.is_ident("crate") {
            let path: syn::Path = meta.value()?.parse()?;
            root = quote!(#path);
            Ok(())
        } else {
            Err(meta.error("expected `name = \"...\"`, `versions = [..]` or `crate = path`"))
        }
    });
    parser.parse2(attr)?;
    let name = name.ok_or_else(|| Error::new(Span::call_site(), "missing `name = \"<interface>\"`"))?;
    if versions.is_empty() {
        versions.push(1);
    }
    versions.sort_unstable();
    versions.dedup();
    let first_version = versions[0];

    let mut item: ItemTrait = syn::parse2(item)?;
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        return Err(Error::new(item.generics.span(), "an interface trait takes no generics"));
    }
    let mut methods = Vec::new();
    for trait_item in &item.items {
        let TraitItem::Fn(f) = trait_item else {
            return Err(Error::new(trait_item.span(), "an interface holds only async methods"));
        };
        if f.sig.asyncness.is_none() {
            return Err(Error::new(f.sig.span(), "interface methods are `async fn`"));
        }
        if f.default.is_some() {
            return Err(Error::new(f.sig.span(), "interface methods have no default body"));
        }
        let mut since = first_version;
        let mut attrs = Vec::new();
        for a in &f.attrs {
            if a.path().is_ident("since") {
                let expr: Expr = a.parse_args()?;
                since = int_of(&expr)?;
                if !versions.contains(&since) {
                    return Err(Error::new(a.span(), "`since` must name one of the interface's versions"));
                }
            } else {
                attrs.push(a.clone());
            }
        }
        let mut inputs = f.sig.inputs.iter();
        match inputs.next() {
            Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
            _ => return Err(Error::new(f.sig.span(), "the first argument must be `&self`")),
        }
        let typed = |arg: Option<&FnArg>| match arg {
            Some(FnArg::Typed(t)) => Some((t.pat.clone(), t.ty.clone())),
            _ => None,
        };
        let (params_pat, params_ty) = typed(inputs.next())
            .ok_or_else(|| Error::new(f.sig.span(), "the second argument must be the params"))?;
        let cx = typed(inputs.next());
        if inputs.next().is_some() {
            return Err(Error::new(
                f.sig.span(),
                "a method takes `&self`, params and optionally the context",
            ));
        }
        let ReturnType::Type(_, output) = &f.sig.output else {
            return Err(Error::new(f.sig.span(), "a method returns `Result<ResultType, tether::Error>`"));
        };
        let result_ty = result_ok_type(output)?;
        methods.push(Method {
            ident: f.sig.ident.clone(),
            attrs,
            params_pat,
            params_ty,
            cx,
            output: (**output).clone(),
            result_ty,
            since,
        });
    }

    let vis = &item.vis;
    let trait_ident = &item.ident;
    let server_ident = format_ident!("{}Server", trait_ident);
    let client_ident = format_ident!("{}Client", trait_ident);
    let trait_attrs = &item.attrs;
    let supertraits = item.supertraits.iter();
    let name_str = name.value();

    let trait_methods = methods.iter().map(|m| {
        let Method { ident, attrs, params_pat, params_ty, output, .. } = m;
        let cx = m.cx.as_ref().map(|(pat, ty)| quote!(, #pat: #ty));
        quote! {
            #(#attrs)*
            fn #ident(&self, #params_pat: #params_ty #cx)
                -> impl ::core::future::Future<Output = #output> + ::core::marker::Send;
        }
    });

    let schema_entries = methods.iter().map(|m| {
        let Method { ident, params_ty, result_ty, since, .. } = m;
        let short = ident.to_string();
        quote! {
            if version >= #since {
                methods.insert(
                    ::std::string::String::from(#short),
                    #root::__private::MethodSchema {
                        params: #root::__private::schema_value::<#params_ty>(),
                        result: #root::__private::schema_value::<#result_ty>(),
                    },
                );
            }
        }
    });
    let schema_entries: Vec<_> = schema_entries.collect();
    let client_schema_entries = schema_entries.clone();

    let dispatch_arms = methods.iter().map(|m| {
        let Method { ident, params_ty, since, .. } = m;
        let short = ident.to_string();
        let call = if m.cx.is_some() { quote!(this.#ident(params, cx).await) } else { quote!(this.#ident(params).await) };
        let drop_cx = if m.cx.is_some() { quote!() } else { quote!(let _ = cx;) };
        quote! {
            #short => {
                if version < #since {
                    return #root::__private::Handled::err(#root::__private::not_in_version(#name_str, #short, #since, version));
                }
                let this = ::std::sync::Arc::clone(&self.0);
                #drop_cx
                #root::__private::dispatch_typed(&params, move |params: #params_ty| async move { #call })
            }
        }
    });

    let client_methods = methods.iter().map(|m| {
        let Method { ident, attrs, params_ty, result_ty, .. } = m;
        let short = ident.to_string();
        let full = format!("{name_str}.{short}");
        let docs = attrs.iter().filter(|a| a.path().is_ident("doc"));
        quote! {
            #(#docs)*
            pub fn #ident(&self, params: &#params_ty) -> #root::__private::Call<#result_ty> {
                self.remote.call(#full, #short, params)
            }
        }
    });

    let versions_lit = versions.iter();
    let versions_client = versions.iter();
    let versions_doc = versions.iter();
    let server_doc = format!(
        "Serves [`{trait_ident}`] as the `{name_str}` interface: give it to `Plugin::interface`, or serve it as a handle with `Peer::serve_handle`."
    );
    let client_doc = format!(
        "A typed client of the `{name_str}` interface: `{client_ident}::new(peer)` for the interface a plugin serves, `{client_ident}::from_handle(peer, handle)` (or `cx.client::<{client_ident}>(handle)`) for a handle."
    );
    item.items.clear();

    Ok(quote! {
        #(#trait_attrs)*
        #vis trait #trait_ident: #(#supertraits +)* ::core::marker::Send + ::core::marker::Sync + 'static {
            #(#trait_methods)*
        }

        #[doc = #server_doc]
        #vis struct #server_ident<T>(::std::sync::Arc<T>);

        impl<T: #trait_ident> #server_ident<T> {
            /// Serves `inner`.
            pub fn new(inner: T) -> Self {
                #server_ident(::std::sync::Arc::new(inner))
            }

            /// Serves an implementation shared with other code.
            pub fn from_arc(inner: ::std::sync::Arc<T>) -> Self {
                #server_ident(inner)
            }
        }

        impl<T> ::core::clone::Clone for #server_ident<T> {
            fn clone(&self) -> Self {
                #server_ident(::std::sync::Arc::clone(&self.0))
            }
        }

        impl<T: #trait_ident> #root::__private::InterfaceServer for #server_ident<T> {
            fn name(&self) -> &str {
                #name_str
            }

            fn versions(&self) -> &[u32] {
                &[#(#versions_lit),*]
            }

            fn methods(&self, version: u32) -> ::std::collections::BTreeMap<::std::string::String, #root::__private::MethodSchema> {
                let mut methods = ::std::collections::BTreeMap::new();
                #(#schema_entries)*
                methods
            }

            fn dispatch(
                &self,
                version: u32,
                method: &str,
                params: ::std::boxed::Box<#root::__private::RawValue>,
                cx: #root::__private::RequestContext,
            ) -> #root::__private::Handled {
                match method {
                    #(#dispatch_arms)*
                    _ => #root::__private::Handled::err(#root::__private::unknown_method(#name_str, method)),
                }
            }
        }

        #[doc = #client_doc]
        #[derive(Debug, Clone)]
        #vis struct #client_ident {
            remote: #root::__private::Remote,
        }

        impl #client_ident {
            /// Calls the interface the other side serves.
            pub fn new(peer: #root::__private::Peer) -> Self {
                #client_ident { remote: #root::__private::Remote::interface(peer) }
            }

            /// Calls a handle the other side owns.
            pub fn from_handle(peer: #root::__private::Peer, handle: #root::__private::HandleRef) -> Self {
                #client_ident { remote: #root::__private::Remote::handle(peer, handle) }
            }

            #(#client_methods)*

            /// The interface file of this interface, from its Rust declaration: every version
            /// with its methods and their schemas. Write it with `.to_text()` and hand it to
            /// plugin authors and to `tether-conformance --interface-file`.
            pub fn interface_document() -> #root::__private::InterfaceDocument {
                #root::__private::InterfaceDocument::from_methods(#name_str, &[#(#versions_doc),*], |version| {
                    let mut methods = ::std::collections::BTreeMap::new();
                    #(#client_schema_entries)*
                    methods
                })
            }
        }

        impl #root::__private::Client for #client_ident {
            const INTERFACE: &'static str = #name_str;
            const VERSIONS: &'static [u32] = &[#(#versions_client),*];

            fn from_remote(remote: #root::__private::Remote) -> Self {
                #client_ident { remote }
            }

            fn remote(&self) -> &#root::__private::Remote {
                &self.remote
            }
        }
    })
}

fn int_of(expr: &Expr) -> syn::Result<u32> {
    match expr {
        Expr::Lit(syn::ExprLit { lit: Lit::Int(i), .. }) => {
            let v: u32 = i.base10_parse()?;
            if v == 0 {
                return Err(Error::new(i.span(), "versions are positive integers"));
            }
            Ok(v)
        }
        other => Err(Error::new(other.span(), "expected a positive integer")),
    }
}

fn result_ok_type(output: &Type) -> syn::Result<Type> {
    let err = || Error::new(output.span(), "a method returns `Result<ResultType, tether::Error>`");
    let Type::Path(path) = output else { return Err(err()) };
    let last = path.path.segments.last().ok_or_else(err)?;
    let PathArguments::AngleBracketed(args) = &last.arguments else { return Err(err()) };
    match args.args.first() {
        Some(GenericArgument::Type(t)) => Ok(t.clone()),
        _ => Err(err()),
    }
}

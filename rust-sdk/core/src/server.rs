//! Serving interfaces: the [`InterfaceServer`] trait that `#[tether::interface]` implements for
//! each declared interface, the [`Router`] service, and the handler [`Error`] type.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use tether_spec::{split_method, ErrorObject, MethodSchema, Ping, RequestMethod};

use crate::connection::{CallError, Handled, Peer, RequestContext, Service};

/// The error a handler returns: an error object sent as the answer (SPEC.md §3.4.4, §5.5).
///
/// Application errors use codes outside -32768..=-32000 (`Error::new(1001, "key not found: k")`);
/// `?` works on [`CallError`] (a failed callback), I/O and JSON errors (as -32603 internal
/// errors).
#[derive(Debug, Clone, PartialEq)]
pub struct Error(ErrorObject);

impl Error {
    /// An error with a code and one human sentence.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Error(ErrorObject::new(code, message))
    }

    /// Adds `data` for programs.
    pub fn with_data(self, data: serde_json::Value) -> Self {
        Error(self.0.with_data(data))
    }

    /// -32603 (internal error).
    pub fn internal(detail: impl fmt::Display) -> Self {
        Error(ErrorObject::internal(detail))
    }

    /// -32602 (invalid params).
    pub fn invalid_params(detail: impl fmt::Display) -> Self {
        Error(ErrorObject::invalid_params(detail))
    }

    /// The error object sent on the wire.
    pub fn object(&self) -> &ErrorObject {
        &self.0
    }

    /// Takes the error object out.
    pub fn into_object(self) -> ErrorObject {
        self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Error {}

impl From<ErrorObject> for Error {
    fn from(e: ErrorObject) -> Self {
        Error(e)
    }
}

/// A call this handler made failed. An application error of the other side (a code outside the
/// range JSON-RPC reserves) passes through as it is; a protocol error does not, since -32601
/// from a callback would tell the caller that *this* method does not exist: it becomes -32603
/// with the callback's error in `data.cause` (SPEC.md §9.3). A cancelled call stays -32800.
impl From<CallError> for Error {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Remote(remote) if tether_spec::codes::is_reserved(remote.code) => {
                let message = format!("internal error: a call this handler made failed: {}", remote.message);
                let cause = serde_json::to_value(&remote).unwrap_or_default();
                Error(
                    ErrorObject::new(tether_spec::codes::INTERNAL_ERROR, message)
                        .with_data(serde_json::json!({ "cause": cause })),
                )
            }
            other => Error(other.to_error_object()),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::internal(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::internal(e)
    }
}

/// One interface served over a connection: by a plugin for the host, or as a handle (SPEC.md
/// §6). `#[tether::interface]` generates an implementation (`KvServer`) for each declared
/// interface; write one by hand only for dynamic dispatch.
pub trait InterfaceServer: Send + Sync + 'static {
    /// The interface's name (`kv`).
    fn name(&self) -> &str;

    /// The versions it implements, in increasing order.
    fn versions(&self) -> &[u32];

    /// The methods of a version with their schemas, by short name (SPEC.md §4.4).
    fn methods(&self, version: u32) -> BTreeMap<String, MethodSchema>;

    /// Handles a call of the short method name `method` in the negotiated `version`: -32601
    /// for a method the version does not have, -32602 for params of the wrong shape.
    fn dispatch(&self, version: u32, method: &str, params: Box<RawValue>, cx: RequestContext) -> Handled;

    /// The interface file of what this server serves: every version with its methods and
    /// schemas (error codes and handles are not known to the server; add them with
    /// [`tether_spec::InterfaceDocument::with_error`] and `with_handle`).
    fn interface_document(&self) -> tether_spec::InterfaceDocument {
        tether_spec::InterfaceDocument::from_methods(self.name(), self.versions(), |v| self.methods(v))
    }
}

impl<S: InterfaceServer + ?Sized> InterfaceServer for Arc<S> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn versions(&self) -> &[u32] {
        (**self).versions()
    }
    fn methods(&self, version: u32) -> BTreeMap<String, MethodSchema> {
        (**self).methods(version)
    }
    fn dispatch(&self, version: u32, method: &str, params: Box<RawValue>, cx: RequestContext) -> Handled {
        (**self).dispatch(version, method, params, cx)
    }
}

/// Decodes typed params and runs a typed handler: -32602 with serde's message when the params
/// do not fit, the result serialized, the error converted.
pub fn dispatch_typed<P, R, E, Fut>(params: &RawValue, handler: impl FnOnce(P) -> Fut) -> Handled
where
    P: DeserializeOwned,
    R: Serialize,
    E: Into<Error>,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
{
    match serde_json::from_str::<P>(params.get()) {
        Err(e) => Handled::err(ErrorObject::invalid_params(e)),
        Ok(params) => {
            let future = handler(params);
            Handled::later(async move {
                match future.await {
                    Ok(result) => {
                        crate::connection::scope::encode_result(&result).map_err(ErrorObject::internal)
                    }
                    Err(e) => Err(e.into().0),
                }
            })
        }
    }
}

/// -32601 for a method of `interface` that exists only from version `since` on.
pub fn not_in_version(interface: &str, method: &str, since: u32, version: u32) -> ErrorObject {
    ErrorObject::method_not_found(
        &format!("{interface}.{method}"),
        format!(
            "{interface}.{method} needs {interface} version {since}; this session uses {interface} version {version}"
        ),
    )
}

/// -32601 for a method `interface` does not have.
pub fn unknown_method(interface: &str, method: &str) -> ErrorObject {
    ErrorObject::method_not_found(
        &format!("{interface}.{method}"),
        format!("interface {interface} has no method {method:?}"),
    )
}

type Route = Arc<dyn Fn(Box<RawValue>, RequestContext) -> Handled + Send + Sync>;
type NotificationHook = Arc<dyn Fn(&str, Box<RawValue>, &Peer) + Send + Sync>;

/// A ready-made [`Service`]: interfaces served at their highest version, typed routes for other
/// methods, `tether/ping` answered, a hook for notifications. What a host serves to its plugins.
#[derive(Default, Clone)]
pub struct Router {
    interfaces: HashMap<String, Arc<dyn InterfaceServer>>,
    routes: HashMap<String, Route>,
    notifications: Option<NotificationHook>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("interfaces", &self.interfaces.keys().collect::<Vec<_>>())
            .field("routes", &self.routes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Router {
    /// A router that answers only `tether/ping`.
    pub fn new() -> Self {
        Router::default()
    }

    /// Serves an interface's methods as `<name>.<method>`, at its highest version.
    pub fn interface(mut self, server: impl InterfaceServer) -> Self {
        self.interfaces.insert(server.name().to_owned(), Arc::new(server));
        self
    }

    /// Serves one typed method with an async handler.
    pub fn route<M, F, Fut>(mut self, handler: F) -> Self
    where
        M: RequestMethod,
        F: Fn(M::Params, RequestContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<M::Result, Error>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.routes.insert(
            M::METHOD.to_owned(),
            Arc::new(move |params, cx| {
                let handler = handler.clone();
                dispatch_typed(&params, move |p: M::Params| handler(p, cx))
            }),
        );
        self
    }

    /// Serves one method by name with a raw handler called on the reader task.
    pub fn route_raw(
        mut self,
        method: impl Into<String>,
        handler: impl Fn(Box<RawValue>, RequestContext) -> Handled + Send + Sync + 'static,
    ) -> Self {
        self.routes.insert(method.into(), Arc::new(handler));
        self
    }

    /// Calls `hook` for each notification other than those the connection handles itself
    /// (`$/log` on a host, for example). It runs on the reader task and must not block.
    pub fn on_notification(
        mut self,
        hook: impl Fn(&str, Box<RawValue>, &Peer) + Send + Sync + 'static,
    ) -> Self {
        self.notifications = Some(Arc::new(hook));
        self
    }
}

impl Service for Router {
    fn request(&self, method: &str, params: Box<RawValue>, cx: RequestContext) -> Handled {
        if let Some(route) = self.routes.get(method) {
            return route(params, cx);
        }
        if method == Ping::METHOD {
            return Handled::ok(&tether_spec::Empty {});
        }
        if let Some((interface, short)) = split_method(method) {
            if let Some(server) = self.interfaces.get(interface) {
                let version = server.versions().iter().copied().max().unwrap_or(1);
                return server.dispatch(version, short, params, cx);
            }
        }
        Handled::err(ErrorObject::method_not_found(method, "this side does not serve it"))
    }

    fn notification(&self, method: &str, params: Box<RawValue>, peer: &Peer) {
        if let Some(hook) = &self.notifications {
            hook(method, params, peer);
        }
    }
}

//! Whether one JSON Schema accepts no more than another (`narrow ⊆ wide`): the check behind
//! `iface.<name>.schemas-compatible`. A plugin may accept more params than the interface file
//! says, never fewer (the file's params ⊆ the plugin's), and may answer with less than the file
//! allows, never more (the plugin's results ⊆ the file's).
//!
//! The check is sound for the keywords it knows and says "cannot decide" for the others, rather
//! than guess: it never calls two schemas compatible when some instance separates them within the
//! keywords below.
//!
//! - Annotations (`description`, `title`, `$schema`, `$comment`, `examples`, `default`,
//!   `contentEncoding`, ...) are ignored; a local `$ref` (`#/$defs/...`) is replaced by its target.
//! - Two schemas equal after that are compatible, whatever their keywords.
//! - `narrow` with `const` or `enum`: each value is validated against `wide` (exact); `narrow`
//!   that is only an `anyOf` or `oneOf`: each branch must be within `wide`.
//! - `type` (a list too; `integer` is within `number`); `minimum`, `maximum`,
//!   `exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength`, `minItems`, `maxItems`
//!   (a bound of `wide` must be met by a bound of `narrow` at least as tight);
//! - objects: `properties`, `required` (what `wide` requires, `narrow` must require),
//!   `additionalProperties` (`false` or a schema); arrays: `items`.
//! - Any other keyword of `narrow` only narrows it further and is ignored (sound); any other
//!   keyword of `wide` that `narrow` does not carry with the same value makes the check undecided.

use serde_json::{Map, Value};

/// Why `narrow ⊆ wide` does not hold, or could not be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Some instance `narrow` accepts is refused by `wide`: where (a JSON pointer into the
    /// schemas' instance) and why.
    No { at: String, why: String },
    /// The check does not know how to decide: where and which keyword.
    Undecided { at: String, why: String },
}

const ANNOTATIONS: &[&str] = &[
    "description",
    "title",
    "$schema",
    "$comment",
    "$id",
    "$defs",
    "definitions",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "contentEncoding",
    "contentMediaType",
    "format",
];

/// The keywords this check understands in `wide`.
const KNOWN: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "const",
    "enum",
];

/// Schemas with the roots their `$ref`s resolve in.
#[derive(Clone, Copy)]
pub(crate) struct Rooted<'a> {
    /// The schema document the `$ref`s point into.
    pub(crate) root: &'a Value,
    /// The schema at hand.
    pub(crate) schema: &'a Value,
}

/// Checks that every instance `narrow` accepts, `wide` accepts too.
pub(crate) fn subset(narrow: Rooted<'_>, wide: Rooted<'_>) -> Result<(), Verdict> {
    check(narrow, wide, "", 0)
}

fn resolve<'a>(r: Rooted<'a>, at: &str) -> Result<Rooted<'a>, Verdict> {
    let mut current = r;
    for _ in 0..32 {
        let Some(reference) = current.schema.get("$ref").and_then(Value::as_str) else { return Ok(current) };
        let target = reference
            .strip_prefix('#')
            .and_then(|pointer| current.root.pointer(&pointer.replace("~1", "/").replace("~0", "~")))
            .or_else(|| reference.strip_prefix('#').and_then(|p| current.root.pointer(p)));
        let Some(target) = target else {
            return Err(Verdict::Undecided {
                at: at.to_owned(),
                why: format!("$ref {reference:?} is not a local reference this check can follow"),
            });
        };
        // A `$ref` beside other keywords: both apply; only a bare `$ref` is replaced.
        let siblings = keywords(current.schema).into_iter().filter(|(k, _)| k != "$ref").count();
        if siblings > 0 {
            return Err(Verdict::Undecided {
                at: at.to_owned(),
                why: "a $ref beside other keywords".to_owned(),
            });
        }
        current = Rooted { root: current.root, schema: target };
    }
    Err(Verdict::Undecided { at: at.to_owned(), why: "$ref chain too deep".to_owned() })
}

/// The keywords of a schema that are not annotations.
fn keywords(schema: &Value) -> Map<String, Value> {
    match schema {
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| !ANNOTATIONS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        _ => Map::new(),
    }
}

/// A schema that accepts everything.
fn universal(schema: &Value) -> bool {
    schema == &Value::Bool(true) || (schema.is_object() && keywords(schema).is_empty())
}

fn types(schema: &Value) -> Option<Vec<String>> {
    match schema.get("type")? {
        Value::String(t) => Some(vec![t.clone()]),
        Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).map(str::to_owned).collect()),
        _ => None,
    }
}

fn type_within(t: &str, wide: &[String]) -> bool {
    wide.iter().any(|w| w == t || (t == "integer" && w == "number"))
}

fn no(at: &str, why: String) -> Verdict {
    Verdict::No { at: if at.is_empty() { "/".to_owned() } else { at.to_owned() }, why }
}

fn undecided(at: &str, why: String) -> Verdict {
    Verdict::Undecided { at: if at.is_empty() { "/".to_owned() } else { at.to_owned() }, why }
}

/// Whether a value (of `narrow`'s `const`/`enum`) is valid under `wide`.
fn value_valid(value: &Value, wide: Rooted<'_>) -> bool {
    // Validate within the root so that `$ref`s resolve: embed the schema beside the root's defs.
    let mut schema = wide.schema.clone();
    if let (Value::Object(map), Some(defs)) = (&mut schema, wide.root.get("$defs")) {
        map.entry("$defs").or_insert_with(|| defs.clone());
    }
    jsonschema::draft202012::new(&schema).map(|v| v.is_valid(value)).unwrap_or(false)
}

fn check(narrow: Rooted<'_>, wide: Rooted<'_>, at: &str, depth: usize) -> Result<(), Verdict> {
    if depth > 64 {
        return Err(undecided(at, "schemas nested too deeply".to_owned()));
    }
    let wide = resolve(wide, at)?;
    if universal(wide.schema) {
        return Ok(());
    }
    let narrow = resolve(narrow, at)?;
    if narrow.schema == &Value::Bool(false) {
        return Ok(());
    }
    let (n, w) = (keywords(narrow.schema), keywords(wide.schema));
    if n == w && !n.contains_key("$ref") && !contains_ref(narrow.schema) {
        return Ok(());
    }
    // Exact for a finite narrow schema.
    let finite: Option<Vec<Value>> = match (n.get("const"), n.get("enum")) {
        (Some(c), _) => Some(vec![c.clone()]),
        (None, Some(Value::Array(values))) => Some(values.clone()),
        _ => None,
    };
    if let Some(values) = finite {
        return match values.iter().find(|v| !value_valid(v, wide)) {
            None => Ok(()),
            Some(v) => Err(no(at, format!("the value {v} is accepted by one and refused by the other"))),
        };
    }
    // A union in `narrow` with nothing beside it: each branch must be within `wide`.
    if n.len() == 1 {
        if let Some(Value::Array(branches)) = n.get("anyOf").or_else(|| n.get("oneOf")) {
            for (i, branch) in branches.iter().enumerate() {
                check(Rooted { root: narrow.root, schema: branch }, wide, at, depth + 1).map_err(
                    |e| match e {
                        Verdict::No { at, why } => {
                            Verdict::No { at, why: format!("{why} (in branch {i} of a union)") }
                        }
                        other => other,
                    },
                )?;
            }
            return Ok(());
        }
    }
    for (k, v) in &w {
        if !KNOWN.contains(&k.as_str()) && n.get(k) != Some(v) {
            return Err(undecided(at, format!("the keyword {k:?} is beyond this check")));
        }
    }
    if w.contains_key("const") || w.contains_key("enum") {
        return Err(undecided(at, "a const or enum against a schema that is not finite".to_owned()));
    }
    if let Some(wt) = types(wide.schema) {
        match types(narrow.schema) {
            None => return Err(no(at, format!("one accepts any type, the other only {}", wt.join(" or ")))),
            Some(nt) => {
                if let Some(t) = nt.iter().find(|t| !type_within(t, &wt)) {
                    return Err(no(
                        at,
                        format!("type {t} is accepted by one and not by the other ({})", wt.join(" or ")),
                    ));
                }
            }
        }
    }
    bounds(&n, &w, at)?;
    objects(narrow, wide, &n, &w, at, depth)?;
    if let Some(wi) = wide.schema.get("items") {
        let ni = narrow.schema.get("items").unwrap_or(&Value::Bool(true));
        let nt = types(narrow.schema).unwrap_or_default();
        if nt.is_empty() || nt.iter().any(|t| t == "array") {
            check(
                Rooted { root: narrow.root, schema: ni },
                Rooted { root: wide.root, schema: wi },
                &format!("{at}/0"),
                depth + 1,
            )?;
        }
    }
    Ok(())
}

fn contains_ref(v: &Value) -> bool {
    match v {
        Value::Object(map) => map.iter().any(|(k, v)| k == "$ref" || contains_ref(v)),
        Value::Array(a) => a.iter().any(contains_ref),
        _ => false,
    }
}

fn bounds(n: &Map<String, Value>, w: &Map<String, Value>, at: &str) -> Result<(), Verdict> {
    let num = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_f64);
    // Lower bounds: the narrow one must be at least the wide one.
    for key in ["minimum", "exclusiveMinimum", "minLength", "minItems"] {
        if let Some(wv) = num(w, key) {
            let nv = num(n, key).or_else(|| if key == "minimum" { num(n, "exclusiveMinimum") } else { None });
            match nv {
                Some(nv) if nv >= wv => {}
                _ => return Err(no(at, format!("{key} {wv} is required by one and not met by the other"))),
            }
        }
    }
    for key in ["maximum", "exclusiveMaximum", "maxLength", "maxItems"] {
        if let Some(wv) = num(w, key) {
            let nv = num(n, key).or_else(|| if key == "maximum" { num(n, "exclusiveMaximum") } else { None });
            match nv {
                Some(nv) if nv <= wv => {}
                _ => return Err(no(at, format!("{key} {wv} is required by one and not met by the other"))),
            }
        }
    }
    Ok(())
}

fn string_set(m: &Map<String, Value>, key: &str) -> Vec<String> {
    m.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn objects(
    narrow: Rooted<'_>,
    wide: Rooted<'_>,
    n: &Map<String, Value>,
    w: &Map<String, Value>,
    at: &str,
    depth: usize,
) -> Result<(), Verdict> {
    let is_object_schema = |m: &Map<String, Value>| {
        m.contains_key("properties") || m.contains_key("required") || m.contains_key("additionalProperties")
    };
    if !is_object_schema(w) {
        return Ok(());
    }
    let narrow_may_be_object = types(narrow.schema).is_none_or(|t| t.iter().any(|t| t == "object"));
    if !narrow_may_be_object {
        return Ok(());
    }
    let empty = Map::new();
    let np = n.get("properties").and_then(Value::as_object).unwrap_or(&empty);
    let wp = w.get("properties").and_then(Value::as_object).unwrap_or(&empty);
    let n_required = string_set(n, "required");
    if let Some(missing) = string_set(w, "required").into_iter().find(|r| !n_required.contains(r)) {
        return Err(no(at, format!("member {missing:?} is required by one and optional in the other")));
    }
    let t = Value::Bool(true);
    let n_extra = n.get("additionalProperties").unwrap_or(&t);
    let w_extra = w.get("additionalProperties").unwrap_or(&t);
    let sub = |ns: &Value, ws: &Value, name: &str| {
        check(
            Rooted { root: narrow.root, schema: ns },
            Rooted { root: wide.root, schema: ws },
            &format!("{at}/{}", name.replace('~', "~0").replace('/', "~1")),
            depth + 1,
        )
    };
    for (name, ns) in np {
        match wp.get(name) {
            Some(ws) => sub(ns, ws, name)?,
            None if w_extra == &Value::Bool(false) => {
                return Err(no(at, format!("member {name:?} is allowed by one and refused by the other")))
            }
            None => sub(ns, w_extra, name)?,
        }
    }
    for (name, ws) in wp {
        if np.contains_key(name) || n_extra == &Value::Bool(false) {
            continue;
        }
        sub(n_extra, ws, name)?;
    }
    if w_extra != &t && !universal(w_extra) {
        if n_extra == &t || universal(n_extra) {
            return Err(no(at, "other members are allowed by one and refused by the other".to_owned()));
        }
        sub(n_extra, w_extra, "*")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sub(narrow: Value, wide: Value) -> Result<(), Verdict> {
        subset(Rooted { root: &narrow, schema: &narrow }, Rooted { root: &wide, schema: &wide })
    }

    #[test]
    fn an_identical_schema_is_compatible_even_with_refs() {
        let s = json!({"type": "object", "properties": {"v": {"$ref": "#/$defs/B"}}, "$defs": {"B": {"anyOf": [{"type": "string"}]}}});
        assert_eq!(sub(s.clone(), s), Ok(()));
    }

    #[test]
    fn accepting_more_members_or_fewer_required_is_wider() {
        let file = json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": false});
        let plugin =
            json!({"type": "object", "properties": {"name": {"type": "string"}, "lang": {"type": "string"}}});
        assert_eq!(sub(file.clone(), plugin.clone()), Ok(()));
        // An open file schema allows `lang` of any type: a plugin that only takes a string
        // `lang` accepts less.
        let open =
            json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]});
        assert_eq!(
            sub(open, plugin.clone()),
            Err(Verdict::No {
                at: "/lang".into(),
                why: "one accepts any type, the other only string".into()
            })
        );
        assert_eq!(
            sub(plugin, file),
            Err(Verdict::No {
                at: "/".into(),
                why: "member \"name\" is required by one and optional in the other".into()
            })
        );
    }

    #[test]
    fn a_narrower_type_or_bound_is_reported_with_its_pointer() {
        let file = json!({"type": "object", "properties": {"name": {"type": "string"}}});
        let plugin = json!({"type": "object", "properties": {"name": {"type": "integer"}}});
        assert_eq!(
            sub(file, plugin),
            Err(Verdict::No {
                at: "/name".into(),
                why: "type string is accepted by one and not by the other (integer)".into()
            })
        );
        let short = json!({"type": "string", "maxLength": 5});
        let any = json!({"type": "string"});
        assert_eq!(sub(short.clone(), any.clone()), Ok(()));
        assert!(matches!(sub(any, short), Err(Verdict::No { .. })));
        assert_eq!(sub(json!({"type": "integer"}), json!({"type": "number"})), Ok(()));
        assert!(matches!(
            sub(json!({"type": "number"}), json!({"type": "integer"})),
            Err(Verdict::No { .. })
        ));
    }

    #[test]
    fn closed_objects_and_enums_are_exact() {
        let closed = json!({"type": "object", "properties": {"a": {}}, "additionalProperties": false});
        let open = json!({"type": "object", "properties": {"a": {}}});
        assert_eq!(sub(closed.clone(), open.clone()), Ok(()));
        assert!(matches!(sub(open, closed), Err(Verdict::No { .. })));
        assert_eq!(sub(json!({"enum": ["a", "b"]}), json!({"type": "string"})), Ok(()));
        assert!(matches!(sub(json!({"enum": ["a", 1]}), json!({"type": "string"})), Err(Verdict::No { .. })));
    }

    #[test]
    fn unknown_keywords_of_the_wider_schema_are_undecided_not_passed() {
        let wide = json!({"type": "string", "pattern": "^a"});
        assert_eq!(
            sub(json!({"type": "string"}), wide),
            Err(Verdict::Undecided {
                at: "/".into(),
                why: "the keyword \"pattern\" is beyond this check".into()
            })
        );
        // The same keyword with the same value on both sides is fine.
        assert_eq!(
            sub(json!({"type": "string", "pattern": "^a"}), json!({"type": "string", "pattern": "^a"})),
            Ok(())
        );
    }
}

//! The matchers of a scenario's expected lines (`spec/transcripts/README.md`, "Scenarios"): a
//! pattern is a JSON value in which a matcher object (`{"$any": ...}`, `{"$schema": ...}`,
//! `{"$capture": ...}`, alone or together) stands for the values that vary, and a whole-string
//! `"${name}"` for a value captured earlier. Everything else is compared exactly.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The members a matcher object may have; an object whose members are all among these (and
/// that has one) is a matcher, any other object is compared member by member.
const MATCHER_KEYS: [&str; 3] = ["$any", "$schema", "$capture"];

/// The type names `$any` takes.
const TYPES: [&str; 7] = ["string", "integer", "number", "boolean", "object", "array", "null"];

/// The values captured so far in one scenario, by name.
pub(crate) type Captures = BTreeMap<String, Value>;

/// Why a value does not match its pattern: where (a JSON pointer into the value) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mismatch {
    /// The JSON pointer of the first difference (`""` for the whole value).
    pub(crate) at: String,
    /// What differs, in one line.
    pub(crate) why: String,
}

/// Whether an object is a matcher.
fn is_matcher(map: &Map<String, Value>) -> bool {
    !map.is_empty() && map.keys().all(|k| MATCHER_KEYS.contains(&k.as_str()))
}

/// The name of a whole-string placeholder `${name}`.
pub(crate) fn placeholder(text: &str) -> Option<&str> {
    text.strip_prefix("${").and_then(|r| r.strip_suffix('}')).filter(|n| is_name(n))
}

fn is_name(n: &str) -> bool {
    !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Appends one reference token to a JSON pointer (RFC 6901 escaping).
pub(crate) fn pointer(base: &str, token: &str) -> String {
    format!("{base}/{}", token.replace('~', "~0").replace('/', "~1"))
}

/// Checks a pattern's matchers before any replay (a misspelt type is an error in the file, not
/// a mismatch), and collects the names it captures and the names it refers to, in file order.
pub(crate) fn check_pattern(
    pattern: &Value,
    captures: &mut Vec<String>,
    refs: &mut Vec<String>,
) -> Result<(), String> {
    match pattern {
        Value::Object(map) if is_matcher(map) => {
            if let Some(any) = map.get("$any") {
                match any {
                    Value::Bool(true) => {}
                    Value::String(t) if TYPES.contains(&t.as_str()) => {}
                    other => return Err(format!("\"$any\" takes true or one of {TYPES:?}, not {other}")),
                }
            }
            if let Some(schema) = map.get("$schema") {
                jsonschema::validator_for(schema)
                    .map_err(|e| format!("the \"$schema\" matcher's schema does not compile: {e}"))?;
            }
            if let Some(name) = map.get("$capture") {
                match name.as_str() {
                    Some(n) if is_name(n) => captures.push(n.to_owned()),
                    _ => {
                        return Err(format!(
                            "\"$capture\" takes a name of letters, digits, _, - or ., not {name}"
                        ))
                    }
                }
            }
            Ok(())
        }
        Value::Object(map) => map.values().try_for_each(|v| check_pattern(v, captures, refs)),
        Value::Array(items) => items.iter().try_for_each(|v| check_pattern(v, captures, refs)),
        Value::String(s) => {
            if let Some(name) = placeholder(s) {
                refs.push(name.to_owned());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Whether a host line holds a matcher (matchers belong in expected lines), with its pointer.
pub(crate) fn find_matcher(value: &Value, at: &str) -> Option<String> {
    match value {
        Value::Object(map) if is_matcher(map) => Some(at.to_owned()),
        Value::Object(map) => map.iter().find_map(|(k, v)| find_matcher(v, &pointer(at, k))),
        Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, v)| find_matcher(v, &pointer(at, &i.to_string())))
        }
        _ => None,
    }
}

/// A host line with every whole-string `${name}` replaced by the value captured as `name`.
pub(crate) fn substitute(value: &Value, captures: &Captures) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => match placeholder(s) {
            Some(name) => captures
                .get(name)
                .cloned()
                .ok_or_else(|| format!("no value was captured as {name:?} before this line"))?,
            None => value.clone(),
        },
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), substitute(v, captures)?)))
                .collect::<Result<_, String>>()?,
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| substitute(v, captures)).collect::<Result<_, String>>()?)
        }
        other => other.clone(),
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Shows a value in one line, shortened.
pub(crate) fn show(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 120 {
        format!("{}...", text.chars().take(117).collect::<String>())
    } else {
        text
    }
}

/// Matches `got` against `pattern`. Captures are added to `captures` only when the whole value
/// matches, so that a failed try (in an unordered group) binds nothing.
pub(crate) fn matches(pattern: &Value, got: &Value, captures: &mut Captures) -> Result<(), Mismatch> {
    let mut fresh = Captures::new();
    walk(pattern, got, "", captures, &mut fresh)?;
    captures.extend(fresh);
    Ok(())
}

fn walk(
    pattern: &Value,
    got: &Value,
    at: &str,
    old: &Captures,
    fresh: &mut Captures,
) -> Result<(), Mismatch> {
    let fail = |why: String| Err(Mismatch { at: at.to_owned(), why });
    match pattern {
        Value::Object(map) if is_matcher(map) => {
            match map.get("$any") {
                Some(Value::String(t)) if t == "number" && got.is_number() => {}
                Some(Value::String(t)) if t.as_str() != type_name(got) => {
                    return fail(format!("expected any {t}, got the {} {}", type_name(got), show(got)))
                }
                _ => {}
            }
            if let Some(schema) = map.get("$schema") {
                let validator = match jsonschema::validator_for(schema) {
                    Ok(v) => v,
                    Err(e) => return fail(format!("the \"$schema\" matcher's schema does not compile: {e}")),
                };
                let first =
                    validator.iter_errors(got).next().map(|e| (e.instance_path.to_string(), e.to_string()));
                if let Some((path, e)) = first {
                    return Err(Mismatch {
                        at: format!("{at}{path}"),
                        why: format!("does not match the \"$schema\" matcher: {e}"),
                    });
                }
            }
            if let Some(name) = map.get("$capture").and_then(Value::as_str) {
                match old.get(name).or_else(|| fresh.get(name)) {
                    Some(earlier) if earlier != got => {
                        return fail(format!(
                            "captured {name:?} as {} earlier, got {}",
                            show(earlier),
                            show(got)
                        ))
                    }
                    Some(_) => {}
                    None => {
                        fresh.insert(name.to_owned(), got.clone());
                    }
                }
            }
            Ok(())
        }
        Value::String(s) if placeholder(s).is_some() => {
            let name = placeholder(s).unwrap_or_default();
            match old.get(name).or_else(|| fresh.get(name)) {
                Some(earlier) if earlier == got => Ok(()),
                Some(earlier) => fail(format!("expected {s} = {}, got {}", show(earlier), show(got))),
                None => fail(format!("no value was captured as {name:?} before this line")),
            }
        }
        Value::Object(map) => {
            let Value::Object(theirs) = got else {
                return fail(format!("expected an object, got the {} {}", type_name(got), show(got)));
            };
            for (k, p) in map {
                match theirs.get(k) {
                    Some(v) => walk(p, v, &pointer(at, k), old, fresh)?,
                    None => {
                        return Err(Mismatch {
                            at: pointer(at, k),
                            why: format!("missing (expected {})", show(p)),
                        })
                    }
                }
            }
            if let Some((k, v)) = theirs.iter().find(|(k, _)| !map.contains_key(*k)) {
                return Err(Mismatch { at: pointer(at, k), why: format!("not expected (got {})", show(v)) });
            }
            Ok(())
        }
        Value::Array(items) => {
            let Value::Array(theirs) = got else {
                return fail(format!("expected an array, got the {} {}", type_name(got), show(got)));
            };
            if items.len() != theirs.len() {
                return fail(format!("expected {} items, got {}: {}", items.len(), theirs.len(), show(got)));
            }
            for (i, (p, v)) in items.iter().zip(theirs).enumerate() {
                walk(p, v, &pointer(at, &i.to_string()), old, fresh)?;
            }
            Ok(())
        }
        exact if exact == got => Ok(()),
        exact => fail(format!("expected {}, got {}", show(exact), show(got))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(pattern: Value, got: Value, caps: &mut Captures) -> Result<(), Mismatch> {
        matches(&pattern, &got, caps)
    }

    fn mismatch(at: &str, why: &str) -> Result<(), Mismatch> {
        Err(Mismatch { at: at.into(), why: why.into() })
    }

    #[test]
    fn exact_values_compare_member_by_member_with_the_pointer_of_the_first_difference() {
        let mut c = Captures::new();
        let p = json!({"id": 2, "result": {"greeting": "Hello, Ada!"}});
        assert_eq!(check(p.clone(), json!({"id": 2, "result": {"greeting": "Hello, Ada!"}}), &mut c), Ok(()));
        assert_eq!(
            check(p.clone(), json!({"id": 2, "result": {"greeting": "Hi"}}), &mut c),
            mismatch("/result/greeting", r#"expected "Hello, Ada!", got "Hi""#)
        );
        assert_eq!(
            check(p.clone(), json!({"id": 2, "result": {}}), &mut c),
            mismatch("/result/greeting", r#"missing (expected "Hello, Ada!")"#)
        );
        assert_eq!(
            check(p, json!({"id": 2, "result": {"greeting": "Hello, Ada!", "x/y": 1}}), &mut c),
            mismatch("/result/x~1y", "not expected (got 1)")
        );
        assert_eq!(check(json!([1, 2]), json!([1]), &mut c), mismatch("", "expected 2 items, got 1: [1]"));
    }

    #[test]
    fn any_of_a_type_fails_on_another_type() {
        let mut c = Captures::new();
        assert_eq!(check(json!({"$any": "string"}), json!("x"), &mut c), Ok(()));
        assert_eq!(check(json!({"$any": "integer"}), json!(7), &mut c), Ok(()));
        assert_eq!(check(json!({"$any": "number"}), json!(7), &mut c), Ok(()));
        assert_eq!(check(json!({"$any": true}), json!(null), &mut c), Ok(()));
        assert_eq!(
            check(json!({"v": {"$any": "integer"}}), json!({"v": "7"}), &mut c),
            mismatch("/v", r#"expected any integer, got the string "7""#)
        );
        assert_eq!(
            check(json!({"$any": "integer"}), json!(1.5), &mut c),
            mismatch("", "expected any integer, got the number 1.5")
        );
    }

    #[test]
    fn a_schema_matcher_fails_with_the_pointer_inside_the_value() {
        let mut c = Captures::new();
        let p = json!({"r": {"$schema": {"type": "object", "properties": {"n": {"minimum": 3}}}}});
        assert_eq!(check(p.clone(), json!({"r": {"n": 3}}), &mut c), Ok(()));
        let Err(m) = check(p, json!({"r": {"n": 2}}), &mut c) else { panic!("2 < 3 must fail") };
        assert_eq!(m.at, "/r/n");
        assert!(m.why.contains("minimum"), "{}", m.why);
    }

    #[test]
    fn a_capture_binds_once_and_a_reuse_that_differs_fails() {
        let mut c = Captures::new();
        let p = json!({"id": {"$capture": "call", "$any": "integer"}});
        assert_eq!(check(p.clone(), json!({"id": 4}), &mut c), Ok(()));
        assert_eq!(c.get("call"), Some(&json!(4)));
        assert_eq!(check(p.clone(), json!({"id": 4}), &mut c), Ok(()));
        assert_eq!(
            check(p, json!({"id": 5}), &mut c),
            mismatch("/id", r#"captured "call" as 4 earlier, got 5"#)
        );
        assert_eq!(check(json!({"again": "${call}"}), json!({"again": 4}), &mut c), Ok(()));
        assert_eq!(
            check(json!({"again": "${call}"}), json!({"again": "4"}), &mut c),
            mismatch("/again", r#"expected ${call} = 4, got "4""#)
        );
    }

    #[test]
    fn a_failed_match_captures_nothing() {
        let mut c = Captures::new();
        let p = json!([{"$capture": "a"}, 2]);
        assert!(check(p.clone(), json!([1, 3]), &mut c).is_err());
        assert!(c.is_empty());
        assert_eq!(check(p, json!([1, 2]), &mut c), Ok(()));
        assert_eq!(c.get("a"), Some(&json!(1)));
    }

    #[test]
    fn host_lines_get_captured_values_in_place_of_whole_string_placeholders() {
        let c: Captures = [("g".to_owned(), json!({"deep": [1]}))].into_iter().collect();
        assert_eq!(
            substitute(&json!({"a": "${g}", "b": "x ${g}", "c": ["${g}"]}), &c),
            Ok(json!({"a": {"deep": [1]}, "b": "x ${g}", "c": [{"deep": [1]}]}))
        );
        assert_eq!(
            substitute(&json!({"a": "${nope}"}), &c),
            Err("no value was captured as \"nope\" before this line".to_owned())
        );
    }

    #[test]
    fn bad_matchers_are_errors_in_the_file() {
        let (mut caps, mut refs) = (Vec::new(), Vec::new());
        assert!(check_pattern(&json!({"$any": "strin"}), &mut caps, &mut refs).is_err());
        assert!(check_pattern(&json!({"$capture": ""}), &mut caps, &mut refs).is_err());
        assert!(check_pattern(&json!({"$schema": {"type": 5}}), &mut caps, &mut refs).is_err());
        assert_eq!(
            check_pattern(&json!({"a": {"$capture": "x"}, "b": "${y}"}), &mut caps, &mut refs),
            Ok(())
        );
        assert_eq!((caps, refs), (vec!["x".to_owned()], vec!["y".to_owned()]));
        assert_eq!(find_matcher(&json!({"p": [{"$any": true}]}), ""), Some("/p/0".to_owned()));
        assert_eq!(find_matcher(&json!({"p": {"$handle": "h1"}}), ""), None);
    }
}

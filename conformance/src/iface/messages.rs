//! `iface.<name>.messages-valid`: every message the plugin sent on an application's interface
//! during the judge's run (generic checks and scenarios) against the interface file's schemas:
//! results of the interface's methods against their `result` schema, the `data` of an error
//! code the file defines against that code's schema, and the plugin's `tether/invoke` of a host
//! handle serving the interface against the method's `params` schema. The first violation is
//! reported with its JSON pointer and the check where it happened.

use std::collections::BTreeMap;
use std::time::Duration;

use jsonschema::Validator;
use serde_json::Value;
use tether_spec::{InterfaceDocument, InterfaceVersion};

use crate::checks::{Failure, Tier};
use crate::driver::{SeenKind, SeenMessage};
use crate::report::{CheckResult, Status};

/// The messages each check saw: (check id, messages).
pub(crate) type Seen = [(String, Vec<SeenMessage>)];

fn result(
    id: String,
    title: String,
    status: Status,
    reason: String,
    failure: Option<Failure>,
) -> CheckResult {
    CheckResult {
        id,
        section: "§4.4".into(),
        title,
        tier: Tier::Core,
        status,
        duration: Duration::ZERO,
        reason,
        failure,
    }
}

/// The schema a message is judged by, and what it is called in reports.
fn schema_for<'a>(file: &'a InterfaceVersion, name: &str, m: &SeenMessage) -> Option<(&'a Value, String)> {
    let full = format!("{name}.{}", m.method);
    match m.kind {
        SeenKind::Result => file.methods.get(&m.method).map(|s| (&s.result, format!("the result of {full}"))),
        SeenKind::Invoke => file
            .methods
            .get(&m.method)
            .map(|s| (&s.params, format!("the params of the plugin's invoke of {full}"))),
        SeenKind::Error(code) => file
            .errors
            .iter()
            .find(|e| e.code == code)
            .and_then(|e| e.data.as_ref())
            .map(|d| (d, format!("the data of error {code} of {full}"))),
    }
}

/// Judges the messages seen on `doc`'s interface, by the version the plugin declared.
pub(crate) fn check(doc: &InterfaceDocument, version: Option<u32>, seen: &Seen) -> CheckResult {
    let name = &doc.name;
    let id = format!("iface.{name}.messages-valid");
    let title = format!("what the plugin sends on {name} matches the interface file's schemas");
    let Some(file) = version.and_then(|v| doc.version(v)) else {
        let why = format!(
            "not run: the plugin does not declare {name} at a version of the file (iface.{name}.declared)"
        );
        return result(id, title, Status::NotRun, why, None);
    };
    let mut validators: BTreeMap<String, Result<Validator, String>> = BTreeMap::new();
    let mut judged = 0usize;
    for (check, messages) in seen {
        for m in messages.iter().filter(|m| &m.interface == name) {
            let Some((schema, what)) = schema_for(file, name, m) else { continue };
            judged += 1;
            let key = format!("{:?} {}", m.kind, m.method);
            let validator = validators
                .entry(key)
                .or_insert_with(|| jsonschema::validator_for(schema).map_err(|e| e.to_string()));
            let first = match validator {
                Ok(v) => v.iter_errors(&m.value).next().map(|e| (e.instance_path.to_string(), e.to_string())),
                Err(e) => Some((String::new(), format!("the file's schema does not compile: {e}"))),
            };
            if let Some((at, why)) = first {
                let f = Failure::new(format!("in {check}: {what} at {at:?}: {why}"))
                    .expected(format!(
                        "{what} to match the interface file's schema (version {}): {schema}",
                        file.version
                    ))
                    .got(m.shown.clone())
                    .fix(format!("send {what} as the interface file defines it"));
                return result(id, title, Status::Fail, f.summary.clone(), Some(f));
            }
        }
    }
    if judged == 0 {
        let why = format!(
            "no message on {name} was seen: no check or scenario called its methods (add scenarios with --scenarios)"
        );
        return result(id, title, Status::Skip, why, None);
    }
    result(id, title, Status::Pass, String::new(), None)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn seen(kind: SeenKind, method: &str, value: Value) -> Vec<(String, Vec<SeenMessage>)> {
        let m =
            SeenMessage { interface: "kv".into(), method: method.into(), kind, value, shown: "frame".into() };
        vec![("scenario.x".to_owned(), vec![m])]
    }

    #[test]
    fn results_and_invokes_are_judged_by_the_file_and_the_first_violation_has_its_pointer() {
        let kv = tether_spec::interfaces::kv::document();
        let ok = check(&kv, Some(2), &seen(SeenKind::Result, "get", json!({"value": "aGk="})));
        assert_eq!(ok.status, Status::Pass, "{}", ok.reason);
        let bad = check(&kv, Some(2), &seen(SeenKind::Result, "get", json!({"value": 5})));
        assert_eq!(bad.status, Status::Fail);
        assert!(
            bad.reason.starts_with("in scenario.x: the result of kv.get at \"/value\": "),
            "{}",
            bad.reason
        );
        let invoke = check(&kv, Some(2), &seen(SeenKind::Invoke, "put", json!({"key": ""})));
        assert!(invoke.reason.contains("the params of the plugin's invoke of kv.put"), "{}", invoke.reason);
        let none = check(&kv, Some(2), &seen(SeenKind::Result, "nope", json!({})));
        assert_eq!(none.status, Status::Skip);
        let undeclared = check(&kv, None, &seen(SeenKind::Result, "get", json!({})));
        assert_eq!(undeclared.status, Status::NotRun);
    }
}

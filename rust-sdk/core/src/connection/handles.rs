//! The handle table: the objects this side serves as handles (SPEC.md §6), with the scope
//! count and the retained flag that decide when a handle expires (§6.3), and [`handles_in`],
//! which finds the handles a request's params carry.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::server::InterfaceServer;

/// One served handle.
struct HandleEntry {
    server: Arc<dyn InterfaceServer>,
    /// How many unanswered requests carry it.
    scopes: usize,
    /// Whether the holder retained it (`tether/retain`), until `$/release`.
    retained: bool,
}

/// The handles this side serves, by id (`h1`, `h2`, ...).
#[derive(Default)]
pub(super) struct HandleTable {
    next: u64,
    entries: HashMap<String, HandleEntry>,
}

impl fmt::Debug for HandleTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandleTable").field("next", &self.next).field("ids", &self.entries.keys()).finish()
    }
}

impl HandleTable {
    /// Serves `server` under a new id, unscoped: it lives until revoked or scoped and expired.
    pub(super) fn serve(&mut self, server: Arc<dyn InterfaceServer>) -> String {
        self.next += 1;
        let id = format!("h{}", self.next);
        self.entries.insert(id.clone(), HandleEntry { server, scopes: 0, retained: false });
        id
    }

    /// Stops serving `id` now.
    pub(super) fn revoke(&mut self, id: &str) {
        self.entries.remove(id);
    }

    /// Whether `id` is served.
    pub(super) fn contains(&self, id: &str) -> bool {
        self.entries.contains_key(id)
    }

    /// The object served as `id`.
    pub(super) fn server(&self, id: &str) -> Option<Arc<dyn InterfaceServer>> {
        self.entries.get(id).map(|e| e.server.clone())
    }

    /// A request carrying these handles was sent: each is scoped to it.
    pub(super) fn open_scopes(&mut self, ids: &[String]) {
        for id in ids {
            if let Some(entry) = self.entries.get_mut(id) {
                entry.scopes += 1;
            }
        }
    }

    /// The request that carried these handles was answered: each expires when no other
    /// request carries it and it is not retained.
    pub(super) fn end_scopes(&mut self, ids: &[String]) {
        for id in ids {
            if let Some(entry) = self.entries.get_mut(id) {
                entry.scopes = entry.scopes.saturating_sub(1);
                if entry.scopes == 0 && !entry.retained {
                    self.entries.remove(id);
                }
            }
        }
    }

    /// `tether/retain`: keeps `id` after its scope ends; false for an unknown handle.
    pub(super) fn retain(&mut self, id: &str) -> bool {
        match self.entries.get_mut(id) {
            Some(entry) => {
                entry.retained = true;
                true
            }
            None => false,
        }
    }

    /// `$/release`: the holder is done; the handle expires unless a request still carries it.
    pub(super) fn release(&mut self, id: &str) {
        if let Some(entry) = self.entries.get_mut(id) {
            entry.retained = false;
            if entry.scopes == 0 {
                self.entries.remove(id);
            }
        }
    }

    /// Drops every handle (the session ended).
    pub(super) fn clear(&mut self) {
        self.entries.clear();
    }

    /// How many handles are served.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Adds to `found` the ids of the handles written in `params` (any object with a string
/// member `"$handle"`, the form serde writes `HandleRef` in) that are not in it yet.
///
/// The params are parsed, not searched as text, so pretty-printed raw params and ids written
/// with escapes are found; the walk keeps no value (large strings are skipped, not copied).
/// Params that are not valid JSON carry no handle.
pub(super) fn handles_in(params: &RawValue, found: &mut Vec<String>) {
    let mut de = serde_json::Deserializer::from_str(params.get());
    let _ = Scan(found).deserialize(&mut de);
}

/// A serde seed that walks any JSON value and collects the `$handle` members.
struct Scan<'a>(&'a mut Vec<String>);

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "$handle" {
                if let HandleId::Id(id) = map.next_value::<HandleId>()? {
                    if !self.0.contains(&id) {
                        self.0.push(id);
                    }
                }
            } else {
                map.next_value_seed(Scan(&mut *self.0))?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Scan(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// The value of a `$handle` member: an id when it is a string, else nothing.
enum HandleId {
    Id(String),
    NotAString,
}

impl<'de> serde::Deserialize<'de> for HandleId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HandleId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a handle id")
            }
            fn visit_str<E>(self, s: &str) -> Result<HandleId, E> {
                Ok(HandleId::Id(s.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HandleId, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(HandleId::NotAString)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HandleId, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(HandleId::NotAString)
            }
            fn visit_bool<E>(self, _: bool) -> Result<HandleId, E> {
                Ok(HandleId::NotAString)
            }
            fn visit_i64<E>(self, _: i64) -> Result<HandleId, E> {
                Ok(HandleId::NotAString)
            }
            fn visit_u64<E>(self, _: u64) -> Result<HandleId, E> {
                Ok(HandleId::NotAString)
            }
            fn visit_f64<E>(self, _: f64) -> Result<HandleId, E> {
                Ok(HandleId::NotAString)
            }
            fn visit_unit<E>(self) -> Result<HandleId, E> {
                Ok(HandleId::NotAString)
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tether_spec::MethodSchema;

    use super::*;
    use crate::{Handled, RequestContext};

    struct Dummy;

    impl InterfaceServer for Dummy {
        fn name(&self) -> &str {
            "dummy"
        }
        fn versions(&self) -> &[u32] {
            &[1]
        }
        fn methods(&self, _: u32) -> BTreeMap<String, MethodSchema> {
            BTreeMap::new()
        }
        fn dispatch(&self, _: u32, _: &str, _: Box<RawValue>, _: RequestContext) -> Handled {
            Handled::err(tether_spec::ErrorObject::internal("unused"))
        }
    }

    fn found(params: &str) -> Vec<String> {
        let mut found = Vec::new();
        let raw = RawValue::from_string(params.to_owned()).unwrap_or_default();
        handles_in(&raw, &mut found);
        found
    }

    #[test]
    fn handles_are_found_in_params() {
        let mut ids = vec!["h1".to_owned()];
        let raw = RawValue::from_string(
            r#"{"a":{"$handle":"h1","interface":"x"},"b":[{"$handle":"h22","interface":"y"}]}"#.to_owned(),
        )
        .unwrap_or_default();
        handles_in(&raw, &mut ids);
        assert_eq!(ids, ["h1", "h22"]);
    }

    #[test]
    fn pretty_printed_params_and_escaped_ids_are_found() {
        // Raw params written by hand or by another serializer: spaces after the colon, and an
        // id with an escape. Searching the text for `"$handle":"` found neither.
        let params = "{\n  \"adder\": { \"$handle\" : \"h\\u0037\", \"interface\": \"adder\" },\n  \"more\": [ {\"$handle\": \"h8\"} ]\n}";
        assert_eq!(found(params), ["h7", "h8"]);
    }

    #[test]
    fn only_string_handle_members_count() {
        assert_eq!(
            found(r#"{"$handle":5,"x":{"$handle":{"a":"h1"}},"s":"\"$handle\":\"h3\""}"#),
            Vec::<String>::new()
        );
        assert_eq!(found("not json"), Vec::<String>::new());
    }

    #[test]
    fn a_scoped_handle_expires_with_its_last_scope() {
        let mut table = HandleTable::default();
        let id = table.serve(Arc::new(Dummy));
        assert_eq!(id, "h1");
        let ids = vec![id.clone()];
        table.open_scopes(&ids);
        table.open_scopes(&ids);
        table.end_scopes(&ids);
        assert!(table.contains(&id), "one request still carries it");
        table.end_scopes(&ids);
        assert!(!table.contains(&id));
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn a_retained_handle_lives_until_released() {
        let mut table = HandleTable::default();
        let id = table.serve(Arc::new(Dummy));
        let ids = vec![id.clone()];
        table.open_scopes(&ids);
        assert!(table.retain(&id));
        table.end_scopes(&ids);
        assert!(table.server(&id).is_some(), "retained past its scope");
        table.release(&id);
        assert!(!table.contains(&id));
        assert!(!table.retain(&id), "an expired handle cannot be retained");
    }

    #[test]
    fn an_unscoped_handle_lives_until_revoked_and_ids_are_not_reused() {
        let mut table = HandleTable::default();
        let first = table.serve(Arc::new(Dummy));
        assert!(table.server(&first).is_some(), "served until revoked");
        table.revoke(&first);
        assert!(!table.contains(&first));
        assert_eq!(table.serve(Arc::new(Dummy)), "h2", "ids are not reused");
        table.clear();
        assert_eq!(table.len(), 0);
    }
}

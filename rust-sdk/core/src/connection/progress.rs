//! Progress (SPEC.md §14) in a connection: what a waiting call does with the `$/progress` of its
//! token, and the `_meta` member a call's params carry and a handler's request is read for.

use std::sync::Arc;

use serde_json::value::RawValue;
use tether_spec::{Meta, ProgressParams, META};
use tokio::sync::Notify;

/// What the caller gave for `$/progress`: called on the reader task for each notification of
/// the call's token, so it must not block.
pub(crate) type ProgressHook = Arc<dyn Fn(&ProgressParams) + Send + Sync>;

/// Where the `$/progress` of one pending call goes: the caller's hook, and the pulse that
/// restarts its time-out (SPEC.md §14.3).
pub(crate) struct ProgressSink {
    pub(super) hook: Option<ProgressHook>,
    pub(super) pulse: Arc<Notify>,
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgressSink").field("hook", &self.hook.is_some()).finish_non_exhaustive()
    }
}

impl ProgressSink {
    /// One `$/progress` of this call arrived.
    pub(super) fn deliver(&self, params: &ProgressParams) {
        self.pulse.notify_one();
        if let Some(hook) = &self.hook {
            hook(params);
        }
    }
}

/// `params` with `meta` as its `_meta` member. Params that are not an object are left alone
/// (no Tether method takes them, and the peer will say so); a `_meta` the params already have
/// gets `meta`'s members added.
pub(super) fn with_meta(params: Box<RawValue>, meta: &Meta) -> Box<RawValue> {
    let text = params.get();
    let Some(rest) = text.strip_prefix('{') else { return params };
    let Ok(meta_json) = serde_json::to_string(meta) else { return params };
    if !text.contains("\"_meta\"") {
        // The common case, without parsing the params: `{` + `"_meta":{..}` + `,` + the rest.
        let rest = rest.trim_start();
        let sep = if rest.starts_with('}') { "" } else { "," };
        let joined = format!("{{\"{META}\":{meta_json}{sep}{rest}");
        return RawValue::from_string(joined).unwrap_or(params);
    }
    let merged = (|| {
        let mut value: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).ok()?;
        let own = serde_json::to_value(meta).ok()?;
        let entry = value.entry(META).or_insert_with(|| serde_json::json!({}));
        if let (Some(entry), serde_json::Value::Object(own)) = (entry.as_object_mut(), own) {
            entry.extend(own);
        }
        serde_json::value::to_raw_value(&value).ok()
    })();
    merged.unwrap_or(params)
}

/// The `_meta` of request params, if they have one that reads as [`Meta`]. Params without the
/// text `"_meta"` are not parsed.
pub(super) fn read_meta(params: &RawValue) -> Option<Meta> {
    if !params.get().contains("\"_meta\"") {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct MetaOnly {
        #[serde(rename = "_meta")]
        meta: Option<Meta>,
    }
    serde_json::from_str::<MetaOnly>(params.get()).ok()?.meta
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_spec::Id;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap_or_default()
    }

    #[test]
    fn meta_is_written_first_in_the_params() {
        let meta = Meta { progress_token: Some(Id::Int(4)), ..Meta::default() };
        assert_eq!(
            with_meta(raw(r#"{"key":"a"}"#), &meta).get(),
            r#"{"_meta":{"progressToken":4},"key":"a"}"#
        );
        assert_eq!(with_meta(raw("{}"), &meta).get(), r#"{"_meta":{"progressToken":4}}"#);
        assert_eq!(with_meta(raw("[1]"), &meta).get(), "[1]");
        let merged = with_meta(raw(r#"{"_meta":{"x":1},"k":2}"#), &meta);
        let v: serde_json::Value = serde_json::from_str(merged.get()).unwrap_or_default();
        assert_eq!(v, serde_json::json!({"_meta":{"x":1,"progressToken":4},"k":2}));
    }

    #[test]
    fn meta_is_read_back_and_absent_meta_is_none() {
        let meta = read_meta(&raw(r#"{"key":"a","_meta":{"progressToken":"t","traceparent":"x"}}"#));
        assert_eq!(
            meta.map(|m| (m.progress_token, m.traceparent)),
            Some((Some(Id::Str("t".into())), Some("x".into())))
        );
        assert!(read_meta(&raw(r#"{"key":"_meta"}"#)).is_none());
        assert!(read_meta(&raw(r#"{"_meta":7}"#)).is_none());
    }
}

//! The greeter application (`examples/greeter_host.rs`): its exported interface files are the
//! committed `examples-python/greeter/greeter.json` and `audience.json`, and its typed client
//! calls the Python greeter plugin in a real process, serving it the audience handle.

// Test code: a failed assumption is a failed test.
#![allow(clippy::expect_used, clippy::panic)]

#[allow(dead_code, unreachable_pub)] // the example's `main` is not called here
#[path = "../examples/greeter_host.rs"]
mod greeter_host;

use std::path::{Path, PathBuf};
use std::time::Duration;

use greeter_host::{AnnounceParams, AudienceRef, AudienceServer, GreeterClient, HelloParams, Lang};
use tether_host::{PluginProcess, Stopped};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("in the workspace").to_path_buf()
}

/// The committed file is the exported text (rewritten with `UPDATE_INTERFACES=1`).
fn committed_is_exported(file: &str, exported: &str, which: &str) {
    let path = root().join("examples-python/greeter").join(file);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if exported != committed {
        if std::env::var_os("UPDATE_INTERFACES").is_some_and(|v| v == "1") {
            std::fs::write(&path, exported).expect("writable examples-python/greeter");
        } else {
            panic!(
                "examples-python/greeter/{file} differs from what greeter_host exports; regenerate it with \
                 `UPDATE_INTERFACES=1 cargo test -p tether-host --test greeter_app` (or `cargo run --example \
                 greeter_host -p tether-host -- --export-interface {which}`) and review the diff"
            );
        }
    }
}

#[test]
fn the_committed_greeter_interface_file_is_the_exported_one() {
    let exported = greeter_host::interface_file();
    committed_is_exported("greeter.json", &exported, "greeter");
    let doc = tether_host::spec::InterfaceDocument::from_json(&exported).expect("a valid interface file");
    assert_eq!(doc.version_numbers(), vec![1]);
    assert_eq!(doc.version(1).map(|v| v.errors[0].code), Some(2001));
    assert_eq!(doc.version(1).map(|v| v.handles.clone()), Some(vec!["audience".to_owned()]));
}

#[test]
fn the_committed_audience_interface_file_is_the_exported_one() {
    let exported = greeter_host::audience_file();
    committed_is_exported("audience.json", &exported, "audience");
    let doc = tether_host::spec::InterfaceDocument::from_json(&exported).expect("a valid interface file");
    assert_eq!(
        doc.version(1).map(|v| v.methods.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["hear".to_owned()])
    );
}

#[tokio::test]
async fn the_typed_client_calls_the_python_greeter() {
    let plugin = PluginProcess::builder("/usr/bin/python3")
        .arg(root().join("examples-python/greeter/greeter.py"))
        .offer::<GreeterClient>()
        .call_timeout(Duration::from_secs(30))
        .start()
        .await
        .expect("start");
    let greeter = plugin.client::<GreeterClient>().expect("greeter declared");
    let en = greeter.hello(&HelloParams { name: "Ada".into(), lang: Lang::En }).await.expect("hello");
    let fr = greeter.hello(&HelloParams { name: "Ada".into(), lang: Lang::Fr }).await.expect("bonjour");
    assert_eq!((en.greeting.as_str(), fr.greeting.as_str()), ("Hello, Ada!", "Bonjour, Ada!"));
    // The plugin calls back the host's audience through the handle the call carries.
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let audience = plugin.serve_handle(AudienceServer::new(Recording(std::sync::Arc::clone(&heard))));
    let params = AnnounceParams { name: "Grace".into(), audience: AudienceRef::from(&audience) };
    let announced = greeter.announce(&params).handle(&audience).await.expect("announce");
    assert_eq!((announced.greeting.as_str(), announced.applause), ("Hello, Grace!", 7));
    assert_eq!(*heard.lock().expect("not poisoned"), ["Hello, Grace!"]);
    let report = plugin.shutdown().await;
    assert_eq!(report.stopped, Stopped::Gracefully, "{report:?}");
}

/// An audience that keeps what it hears and applauds 7 times.
struct Recording(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl greeter_host::Audience for Recording {
    async fn hear(
        &self,
        params: greeter_host::HearParams,
    ) -> Result<greeter_host::HearResult, tether_host::HandlerError> {
        self.0.lock().expect("not poisoned").push(params.greeting);
        Ok(greeter_host::HearResult { applause: 7 })
    }
}

//! Discovery: the manifests shipped with the Python and Node examples, a Rust plugin beside its
//! manifest, and the errors of bad manifests, each naming its file and field; real plugin
//! processes throughout.

// Test code: a failed assumption is a failed test.
#![allow(clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::capture_logs;
use tether_host::interfaces::KvClient;
use tether_host::spec::interfaces::kv;
use tether_host::{discover, sha256_file, Error, Manifest, Stopped};
use tether_testkit::{cargo_library, sdk_example};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// A fresh directory for one test under cargo's temporary directory for integration tests.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("discovery").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    std::fs::write(path, text).expect("write");
}

/// Puts and gets a key through the plugin a manifest describes, then shuts it down cleanly.
async fn round_trip(manifest: &Manifest) {
    let plugin = manifest.builder().call_timeout(Duration::from_secs(30)).start().await.expect("start");
    assert_eq!(plugin.name(), manifest.name);
    let store = plugin.client::<KvClient>().expect("kv declared");
    store.put(&kv::PutParams { key: "k".into(), value: "v".into() }).await.expect("put");
    let got = store.get(&kv::KeyParams { key: "k".into() }).await.expect("get");
    assert_eq!(&got.value[..], b"v");
    let report = plugin.shutdown().await;
    assert_eq!(report.stopped, Stopped::Gracefully, "{report:?}");
    assert_eq!(report.exit.code, Some(0), "{report:?}");
}

#[test]
fn the_shipped_manifests_are_valid_and_pin_the_current_scripts() {
    let update = std::env::var_os("UPDATE_MANIFESTS").is_some();
    for dir in ["examples-python", "examples-node"] {
        let found = discover(repo(dir));
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        let mut names: Vec<&str> = found.plugins.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        let lang = dir.trim_start_matches("examples-");
        assert_eq!(names, [format!("blob-{lang}"), format!("counter-{lang}"), format!("kv-{lang}")]);
        for manifest in &found.plugins {
            let actual = sha256_file(&manifest.pinned_file).expect("hash");
            if actual == manifest.sha256 {
                continue;
            }
            if update {
                let text = std::fs::read_to_string(&manifest.file).expect("read");
                std::fs::write(&manifest.file, text.replace(&manifest.sha256, &actual)).expect("write");
            } else {
                panic!(
                    "{} pins {} to {}, but it is {actual}: regenerate with UPDATE_MANIFESTS=1",
                    manifest.file.display(),
                    manifest.pinned_file.display(),
                    manifest.sha256
                );
            }
        }
    }
}

#[tokio::test]
async fn the_python_and_node_kv_plugins_start_from_their_manifests() {
    capture_logs();
    for (dir, name) in [("examples-python", "kv-python"), ("examples-node", "kv-node")] {
        let found = discover(repo(dir));
        let manifest = found.plugin(name).unwrap_or_else(|| panic!("{name} in {found:?}"));
        round_trip(manifest).await;
    }
}

#[tokio::test]
async fn a_rust_plugin_starts_from_the_manifest_beside_it() {
    capture_logs();
    let dir = scratch("rust");
    let binary = sdk_example("kv");
    std::os::unix::fs::symlink(&binary, dir.join("kv")).expect("link");
    let digest = sha256_file(&binary).expect("hash");
    write(
        &dir.join("kv-rust/tether-plugin.toml"),
        &format!(
            "name = 'kv-rust'\ncommand = ['../kv']\ninterfaces = {{ kv = [1, 2] }}\nsha256 = '{digest}'\n"
        ),
    );
    // `../kv` leaves the manifest's directory: refused. Beside it, the plugin is found.
    let found = discover(&dir);
    assert_eq!(found.errors.len(), 1, "{found:?}");
    assert!(found.errors[0].to_string().contains("leaves the manifest's directory"), "{}", found.errors[0]);
    std::fs::rename(dir.join("kv"), dir.join("kv-rust/kv")).expect("move");
    write(
        &dir.join("kv-rust/tether-plugin.toml"),
        &format!(
            "name = 'kv-rust'\ncommand = ['./kv']\ninterfaces = {{ kv = [1, 2] }}\nsha256 = '{digest}'\n\
             env = {{ RUST_LOG = 'debug' }}\nstart_timeout_ms = 30000\n"
        ),
    );
    let found = discover(&dir);
    assert!(found.errors.is_empty(), "{:?}", found.errors);
    let manifest = found.plugin("kv-rust").expect("found");
    assert_eq!(manifest.pinned_file, manifest.program);
    assert_eq!(manifest.start_timeout, Some(Duration::from_secs(30)));
    round_trip(manifest).await;
}

/// A manifest that names a `library` (issue 15): the plugin library is loaded into the host,
/// after its checksum; a wrong digest refuses it before anything of it runs; naming both a
/// `command` and a `library` is refused naming the field.
#[tokio::test]
async fn a_library_manifest_starts_the_plugin_in_process_after_its_checksum() {
    capture_logs();
    let dir = scratch("library");
    let library = cargo_library("tether-example-kv-lib");
    std::fs::copy(&library, dir.join("libkv.so")).expect("copy");
    let digest = sha256_file(dir.join("libkv.so")).expect("hash");
    let manifest = |digest: &str| {
        format!(
            "name = 'kv-library'\nlibrary = 'libkv.so'\ninterfaces = {{ kv = [2] }}\nsha256 = '{digest}'\n"
        )
    };
    write(&dir.join("kv.tether.toml"), &manifest(&digest));
    let found = discover(&dir);
    assert!(found.errors.is_empty(), "{:?}", found.errors);
    let kv = found.plugin("kv-library").expect("found");
    assert!(kv.in_process);
    assert_eq!(kv.program, dir.join("libkv.so"));
    let plugin = kv.builder().call_timeout(Duration::from_secs(30)).start().await.expect("start");
    assert_eq!(plugin.pid(), std::process::id(), "loaded into this process");
    plugin.shutdown().await;
    round_trip(kv).await;

    let wrong = "ab".repeat(32);
    write(&dir.join("kv.tether.toml"), &manifest(&wrong));
    let found = discover(&dir);
    let error = found.plugin("kv-library").expect("found").builder().start().await.expect_err("wrong digest");
    assert!(matches!(error, Error::ChecksumMismatch { .. }), "{error:?}");
    assert!(error.to_string().contains(&wrong), "{error}");

    write(&dir.join("kv.tether.toml"), &format!("{}command = ['./kv']\n", manifest(&digest)));
    let found = discover(&dir);
    assert_eq!(found.errors.len(), 1, "{found:?}");
    assert_eq!(found.errors[0].field.as_deref(), Some("library"));
    assert!(found.errors[0].to_string().contains("not both"), "{}", found.errors[0]);
}

#[tokio::test]
async fn a_tampered_script_fails_the_checksum_and_is_not_started() {
    capture_logs();
    let dir = scratch("tampered");
    for file in ["kv.py", "tether.py", "kv.tether.toml"] {
        std::fs::copy(repo("examples-python").join(file), dir.join(file)).expect("copy");
    }
    let found = discover(&dir);
    let manifest = found.plugin("kv-python").expect("found").clone();
    round_trip(&manifest).await;

    let script = dir.join("kv.py");
    let mut text = std::fs::read_to_string(&script).expect("read");
    text.push_str("\nstore['planted'] = b'by an attacker'\n");
    std::fs::write(&script, text).expect("tamper");
    match manifest.builder().start().await {
        Err(Error::ChecksumMismatch { plugin, program, expected, .. }) => {
            assert_eq!(plugin, "kv-python");
            assert_eq!(program, script);
            assert_eq!(expected, manifest.sha256);
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
}

#[test]
fn bad_manifests_are_reported_each_naming_its_file_and_field() {
    let dir = scratch("bad");
    let hash = "ab".repeat(32);
    let good = format!("command = ['python3', 'p.py']\ninterfaces = {{ kv = [1, 2] }}\nsha256 = '{hash}'\n");
    let cases = [
        ("missing", good.clone(), "name", "missing field"),
        ("badhash", format!("name = 'badhash'\n{}", good.replace(&hash, "12345")), "sha256", "not a SHA-256"),
        ("escape", format!("name = 'escape'\n{}", good.replace("p.py", "../../p.py")), "command", "leaves"),
        (
            "absolute",
            format!("name = 'absolute'\n{}", good.replace("'python3', 'p.py'", "'/bin/p'")),
            "command",
            "relative",
        ),
        ("unknown", format!("name = 'unknown'\n{good}color = 'red'\n"), "color", "unknown field"),
        (
            "noversion",
            format!("name = 'noversion'\n{}", good.replace("[1, 2]", "[]")),
            "interfaces.kv",
            "non-empty",
        ),
        (
            "v3",
            format!("name = 'v3'\n{}", good.replace("[1, 2]", "[3]")),
            "interfaces.kv",
            "no common version",
        ),
        (
            "other",
            format!("name = 'other'\n{}", good.replace("kv =", "telepathy ="),),
            "interfaces.telepathy",
            "does not speak",
        ),
        ("syntax", "name = 'syntax\n".to_owned(), "", "line 1"),
    ];
    for (sub, text, _, _) in &cases {
        write(&dir.join(sub).join("tether-plugin.toml"), text);
    }
    write(&dir.join("good.tether.toml"), &format!("name = 'good'\n{good}"));
    write(&dir.join("z-duplicate.tether.toml"), &format!("name = 'good'\n{good}"));
    write(&dir.join("notes.toml"), "not a manifest: ignored");

    let speaks = BTreeMap::from([("kv".to_owned(), vec![1, 2])]);
    let found = discover(&dir).restrict_to(&speaks);
    assert_eq!(found.plugins.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["good"]);
    let dup = found.errors.iter().find(|e| e.file.ends_with("z-duplicate.tether.toml")).expect("duplicate");
    assert_eq!(dup.field.as_deref(), Some("name"));
    assert!(dup.reason.contains("good.tether.toml"), "{dup}");
    for (sub, _, field, reason) in &cases {
        let file = dir.join(sub).join("tether-plugin.toml");
        let error =
            found.errors.iter().find(|e| e.file == file).unwrap_or_else(|| panic!("{sub}: {found:?}"));
        let message = error.to_string();
        assert!(message.contains(&file.display().to_string()), "{message}");
        assert!(message.contains(*reason), "{sub}: {message}");
        if !field.is_empty() {
            assert_eq!(error.field.as_deref(), Some(*field), "{sub}: {message}");
            assert!(message.contains(&format!("field `{field}`")), "{message}");
        }
    }
    assert_eq!(found.errors.len(), cases.len() + 1, "{:?}", found.errors);
}

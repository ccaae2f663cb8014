//! A plugin library whose table has another in-process ABI version is refused with both
//! versions named, before anything in it is called. (Its own test process: the test library
//! reads the version to announce from the environment.)

#![allow(clippy::expect_used)]

use tether_host::{Error, PluginProcess};
use tether_testkit::cargo_library;

#[tokio::test]
async fn tables_of_another_abi_version_are_refused_naming_both_versions() {
    let library = cargo_library("tether-test-library");
    for other in [0, 1] {
        std::env::set_var("TETHER_TEST_LIBRARY_ABI", other.to_string());
        let error = PluginProcess::library(&library).name("old").start().await.expect_err("another ABI");
        assert!(matches!(error, Error::Library { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.starts_with("plugin old: cannot load"), "{text}");
        assert!(
            text.contains(&format!("its in-process ABI version is {other}, and this host speaks version 2")),
            "{text}"
        );
    }
    // The same library with its own version loads.
    std::env::remove_var("TETHER_TEST_LIBRARY_ABI");
    let plugin = PluginProcess::library(&library).start().await.expect("version 2 loads");
    assert_eq!(plugin.info().name, "test-library");
    plugin.shutdown().await;
}

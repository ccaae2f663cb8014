//! [`discover`]: the plugin manifests of a directory and of its subdirectories, each validated
//! on its own, so that one bad manifest does not hide the good ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::manifest::{Manifest, ManifestError, MANIFEST_FILE, MANIFEST_SUFFIX};

/// What a scan found: the valid manifests, and an error for each file that is not one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// The valid manifests, in path order.
    pub plugins: Vec<Manifest>,
    /// The manifests that cannot be used, each naming its file and field.
    pub errors: Vec<ManifestError>,
}

impl Discovery {
    /// The plugin of that name, if one was found.
    pub fn plugin(&self, name: &str) -> Option<&Manifest> {
        self.plugins.iter().find(|m| m.name == name)
    }

    /// Keeps the plugins the host can talk to (`speaks`: the interfaces and versions it
    /// speaks), each offering only the common versions ([`Manifest::restrict_to`]); the others
    /// move to [`errors`](Self::errors).
    pub fn restrict_to(mut self, speaks: &BTreeMap<String, Vec<u32>>) -> Discovery {
        let mut kept = Vec::with_capacity(self.plugins.len());
        for mut manifest in self.plugins {
            match manifest.restrict_to(speaks) {
                Ok(()) => kept.push(manifest),
                Err(e) => self.errors.push(e),
            }
        }
        self.plugins = kept;
        self
    }
}

/// Scans `dir` and its direct subdirectories for plugin manifests (`tether-plugin.toml`, or
/// `NAME.tether.toml` when several plugins share a directory) and validates each. Two
/// manifests with the same plugin name: the second is an error naming the first. A directory
/// that cannot be read is an error naming it.
pub fn discover(dir: impl AsRef<Path>) -> Discovery {
    let dir = dir.as_ref();
    let mut files = Vec::new();
    let mut report = Discovery::default();
    match entries(dir) {
        Ok(list) => {
            for path in list {
                if path.is_dir() {
                    match entries(&path) {
                        Ok(inner) => files.extend(inner.into_iter().filter(|p| is_manifest(p))),
                        Err(e) => report.errors.push(unreadable(&path, e)),
                    }
                } else if is_manifest(&path) {
                    files.push(path);
                }
            }
        }
        Err(e) => report.errors.push(unreadable(dir, e)),
    }
    files.sort();
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        match Manifest::load(&file) {
            Ok(manifest) => match names.get(&manifest.name) {
                Some(first) => report.errors.push(ManifestError {
                    file,
                    field: Some("name".into()),
                    reason: format!("plugin {} is already declared by {}", manifest.name, first.display()),
                }),
                None => {
                    names.insert(manifest.name.clone(), file);
                    report.plugins.push(manifest);
                }
            },
            Err(e) => report.errors.push(e),
        }
    }
    report
}

fn entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut list = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        list.push(entry?.path());
    }
    list.sort();
    Ok(list)
}

fn is_manifest(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    path.is_file()
        && (name == MANIFEST_FILE || (name.ends_with(MANIFEST_SUFFIX) && name.len() > MANIFEST_SUFFIX.len()))
}

fn unreadable(dir: &Path, e: std::io::Error) -> ManifestError {
    ManifestError { file: dir.to_owned(), field: None, reason: format!("cannot scan the directory: {e}") }
}

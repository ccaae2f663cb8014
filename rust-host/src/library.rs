//! The host half of the in-process ABI (`tether_spec::abi`): loading a plugin library, checking
//! its entry symbol and ABI version, and one open instance as a byte stream.
//!
//! This is the only module of the host with `unsafe` code: loading a library runs its
//! initialisers, and its entry symbol and table are trusted to have the types the ABI declares.
//! Nothing here can make a loaded library safe; what it guarantees is that the library is never
//! unloaded while an instance of it is open: every [`Instance`] holds the [`Library`] in an
//! `Arc`, and is closed (which joins the plugin's threads) before that `Arc` is dropped.

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tether_core::ChunkReader;
use tether_spec::abi::{EntryFn, PluginTableV1, ABI_VERSION, ENTRY_SYMBOL, TABLE_V1_SIZE};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc::UnboundedSender;

/// A loaded plugin library and a copy of its table.
pub(crate) struct Library {
    table: PluginTableV1,
    path: PathBuf,
    /// Last: dropped (unloaded) after everything else.
    _library: libloading::Library,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Loads `path` and checks that it is a Tether plugin of this ABI version; the error is the
/// cause, for [`crate::Error::Library`].
pub(crate) fn load(path: &Path) -> Result<Arc<Library>, String> {
    // SAFETY: loading a library runs its initialisers with the host's privileges. That is what
    // an in-process plugin is (the builder's documentation says so); the host chose the file.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| format!("cannot open it: {e}"))?;
    // SAFETY: the symbol, if present, is the ABI's entry function (`EntryFn`); a library that
    // exports this name with another type breaks the ABI, which no check can detect.
    let entry = unsafe { library.get::<EntryFn>(ENTRY_SYMBOL.as_bytes()) }.map_err(|e| {
        format!("it does not export the symbol {ENTRY_SYMBOL}, so it is not a Tether plugin library ({e})")
    })?;
    let table = entry();
    if table.is_null() {
        return Err(format!("its {ENTRY_SYMBOL} returned no table"));
    }
    // SAFETY: the entry returned a non-null pointer to a static table that lives as long as the
    // library; its first field is the ABI version in every version of the ABI, so reading it
    // alone is valid whatever the version.
    let abi_version = unsafe { std::ptr::addr_of!((*table).abi_version).read() };
    if abi_version != ABI_VERSION {
        return Err(format!(
            "its in-process ABI version is {abi_version}, and this host speaks version {ABI_VERSION}"
        ));
    }
    // SAFETY: a version 1 table starts with `abi_version` and `size`.
    let size = unsafe { std::ptr::addr_of!((*table).size).read() };
    if size < TABLE_V1_SIZE {
        return Err(format!("its version {ABI_VERSION} table has {size} bytes, less than {TABLE_V1_SIZE}"));
    }
    // SAFETY: a version 1 table of at least `TABLE_V1_SIZE` bytes, static in the library.
    let table = unsafe { table.read() };
    Ok(Arc::new(Library { table, path: path.to_owned(), _library: library }))
}

/// Where the plugin's bytes go: the reading half of the host's session. Given to the plugin as
/// its `host_ctx`; freed only after `close` returned.
struct Inbox(Mutex<Option<UnboundedSender<Vec<u8>>>>);

extern "C" fn receive(ctx: *mut c_void, bytes: *const u8, len: usize) {
    // Unwinding out of an `extern "C"` function aborts: catch everything.
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: `ctx` is the `Inbox` this module gave to `open`, freed only after `close`
        // returned, and the ABI forbids calling back after that.
        let Some(inbox) = (unsafe { ctx.cast::<Inbox>().as_ref() }) else { return };
        let mut tx = inbox.0.lock().unwrap_or_else(PoisonError::into_inner);
        if len == 0 || bytes.is_null() {
            // The end of the plugin's stream.
            tx.take();
            return;
        }
        // SAFETY: the plugin passes `len` readable bytes, valid for the duration of the call;
        // they are copied here.
        let chunk = unsafe { std::slice::from_raw_parts(bytes, len) }.to_vec();
        if let Some(sender) = tx.as_ref() {
            let _ = sender.send(chunk);
        }
    });
}

/// What `close` needs: the instance, the inbox it calls back, and the library they live in.
struct Opened {
    instance: usize,
    inbox: usize,
    library: Arc<Library>,
}

impl Opened {
    /// Ends the instance (blocking until its threads are done), then frees the inbox; the
    /// library may be unloaded after this returns.
    fn close(self) {
        (self.library.table.close)(self.instance as *mut c_void);
        // SAFETY: `inbox` came from `Box::into_raw` in `Instance::open`, and after `close`
        // returned the plugin never calls back with it.
        drop(unsafe { Box::from_raw(self.inbox as *mut Inbox) });
        drop(self.library);
    }
}

/// One open instance of a plugin library.
pub(crate) struct Instance {
    opened: Mutex<Option<Opened>>,
    /// `send_to_plugin` of the table, with the instance address, while open.
    send: tether_spec::abi::SendToPluginFn,
}

impl Instance {
    /// Opens an instance: the plugin's bytes arrive on the returned reader.
    pub(crate) fn open(library: &Arc<Library>) -> Result<(Arc<Instance>, ChunkReader), String> {
        let (tx, reader) = ChunkReader::channel();
        let inbox = Box::into_raw(Box::new(Inbox(Mutex::new(Some(tx)))));
        let instance = (library.table.open)(inbox.cast(), receive);
        if instance.is_null() {
            // SAFETY: the plugin failed to open and keeps no copy of `inbox`.
            drop(unsafe { Box::from_raw(inbox) });
            return Err("its open function failed (the plugin could not start)".to_owned());
        }
        let opened = Opened { instance: instance as usize, inbox: inbox as usize, library: library.clone() };
        let send = library.table.send_to_plugin;
        Ok((Arc::new(Instance { opened: Mutex::new(Some(opened)), send }), reader))
    }

    fn send(&self, bytes: &[u8]) -> bool {
        let opened = self.opened.lock().unwrap_or_else(PoisonError::into_inner);
        match opened.as_ref() {
            Some(o) => (self.send)(o.instance as *mut c_void, bytes.as_ptr(), bytes.len()) == 0,
            None => false,
        }
    }

    /// Closes the instance (once; later calls do nothing) and returns when it is done. Blocks.
    pub(crate) fn close(&self) {
        let opened = self.opened.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(opened) = opened {
            opened.close();
        }
    }

    /// Whether the instance was closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.opened.lock().unwrap_or_else(PoisonError::into_inner).is_none()
    }
}

impl Drop for Instance {
    /// An instance still open when the last reference goes (nobody shut it down) is closed on a
    /// thread of its own: closing waits for the plugin's last answers, which a drop, perhaps on
    /// a runtime's thread, must not.
    fn drop(&mut self) {
        if let Some(opened) = self.opened.get_mut().unwrap_or_else(PoisonError::into_inner).take() {
            let _ =
                std::thread::Builder::new().name("tether-library-close".into()).spawn(move || opened.close());
        }
    }
}

/// The writing half of the host's session: every write goes to the plugin at once (it copies).
pub(crate) struct InstanceWriter(pub(crate) Arc<Instance>);

impl AsyncWrite for InstanceWriter {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if buf.is_empty() || self.0.send(buf) {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the in-process plugin no longer reads",
            )))
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

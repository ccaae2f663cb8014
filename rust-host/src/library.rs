//! The host half of the in-process ABI (`tether_spec::abi`, version 2): loading a plugin library,
//! checking its entry symbol and ABI version, and one open instance as the two ends of the
//! connection's message-level transport (`tether_core::Session::start_messages`): the session's
//! messages go to `send_to_plugin` on the sending thread, and the plugin's arrive through
//! `send_to_host` and are dispatched on the plugin's calling thread, so that a call whose
//! handler does not wait is answered before the caller's `send_to_plugin` returns.
//!
//! This is the only module of the host with `unsafe` code: loading a library runs its
//! initialisers, and its entry symbol and table are trusted to have the types the ABI declares.
//! Nothing here can make a loaded library safe; what it guarantees is that the library is never
//! unloaded while an instance of it is open: every [`Instance`] holds the [`Library`] in an
//! `Arc`, and is closed (which joins the plugin's threads) before that `Arc` is dropped.

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tether_core::{MessageInput, MessageSink, Options, Service, Session};
use tether_spec::abi::{EntryFn, Message, PluginTableV2, Slice, ABI_VERSION, ENTRY_SYMBOL, TABLE_V2_SIZE};

/// A loaded plugin library and a copy of its table.
pub(crate) struct Library {
    table: PluginTableV2,
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
    // SAFETY: a version 2 table starts with `abi_version` and `size`.
    let size = unsafe { std::ptr::addr_of!((*table).size).read() };
    if size < TABLE_V2_SIZE {
        return Err(format!("its version {ABI_VERSION} table has {size} bytes, less than {TABLE_V2_SIZE}"));
    }
    // SAFETY: a version 2 table of at least `TABLE_V2_SIZE` bytes, static in the library.
    let table = unsafe { table.read() };
    Ok(Arc::new(Library { table, path: path.to_owned(), _library: library }))
}

/// The link to one instance, shared by the session's sink and by [`Instance::close`]: the
/// plugin's functions and its instance pointer, and the count of calls into it in progress, so
/// that `close` is never called while a `send_to_plugin` runs (the ABI forbids it).
struct Link {
    send_to_plugin: tether_spec::abi::SendToPluginFn,
    /// The instance pointer `open` returned (0 until then).
    instance: AtomicUsize,
    /// Calls of `send_to_plugin` in progress (nested ones included).
    sending: AtomicUsize,
    /// Set before `close`: no new call starts.
    closing: AtomicBool,
}

/// The session's sink: each message goes to the plugin at once, on the sending thread. No lock
/// is held across the call, since the plugin may call back (`send_to_host`) before it returns.
struct ToPlugin(Arc<Link>);

impl MessageSink for ToPlugin {
    fn send(&self, body: &[u8], attachments: &[bytes::Bytes]) -> bool {
        let link = &self.0;
        // Counted before `closing` is read, and `close` sets `closing` before it reads the
        // count (both sequentially consistent): either this call sees `closing`, or `close`
        // waits for it.
        link.sending.fetch_add(1, Ordering::SeqCst);
        let instance = link.instance.load(Ordering::SeqCst);
        let sent = if link.closing.load(Ordering::SeqCst) || instance == 0 {
            false
        } else {
            tether_spec::abi::lend(body, attachments, |message| {
                (link.send_to_plugin)(instance as *mut c_void, message) == 0
            })
        };
        link.sending.fetch_sub(1, Ordering::SeqCst);
        sent
    }

    fn end(&self) {
        // The host's end of messages is `close`, made by the owner of the instance.
    }
}

/// Where the plugin's messages go: the input of the host's session. Given to the plugin as its
/// `host_ctx`; freed only after `close` returned.
struct Inbox(MessageInput);

extern "C" fn receive(ctx: *mut c_void, message: *const Message) {
    // Unwinding out of an `extern "C"` function aborts: catch everything.
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: `ctx` is the `Inbox` this module gave to `open`, freed only after `close`
        // returned, and the ABI forbids calling back after that.
        let Some(Inbox(input)) = (unsafe { ctx.cast::<Inbox>().as_ref() }) else { return };
        // SAFETY: the plugin passes a valid `Message` for the duration of the call, or null for
        // the end of its messages.
        let Some(message) = (unsafe { message.as_ref() }) else {
            input.end();
            return;
        };
        let Some(body) = lent(message.body) else { return };
        let mut attachments = Vec::with_capacity(message.attachment_count);
        if message.attachment_count > 0 {
            if message.attachments.is_null() {
                return;
            }
            // SAFETY: `attachment_count` slices at `attachments` (non-null), lent for the call.
            let slices = unsafe { std::slice::from_raw_parts(message.attachments, message.attachment_count) };
            for slice in slices {
                let Some(bytes) = lent(*slice) else { return };
                attachments.push(bytes::Bytes::copy_from_slice(bytes));
            }
        }
        input.deliver(body, attachments);
    });
}

/// The bytes of a slice the plugin lends for the duration of the call; `None` for a null
/// pointer with a length.
fn lent<'a>(slice: Slice) -> Option<&'a [u8]> {
    if slice.len == 0 {
        return Some(&[]);
    }
    if slice.ptr.is_null() {
        return None;
    }
    // SAFETY: the plugin passes `len` readable bytes at `ptr` (non-null), valid for the
    // duration of the call (the ABI's contract); they are parsed or copied before it returns.
    Some(unsafe { std::slice::from_raw_parts(slice.ptr, slice.len) })
}

/// What `close` needs: the inbox the plugin calls back, and the library they live in.
struct Opened {
    inbox: usize,
    library: Arc<Library>,
}

/// One open instance of a plugin library.
pub(crate) struct Instance {
    link: Arc<Link>,
    opened: Mutex<Option<Opened>>,
}

/// How long [`Instance::close`] sleeps between looks at the calls into the plugin in progress
/// (they are synchronous and short: a handler's part before its first wait).
const SENDING_POLL: Duration = Duration::from_micros(200);

impl Instance {
    /// Opens an instance and starts the host's session on it (`options`, `service`). Must be
    /// called within a tokio runtime.
    pub(crate) fn open(
        library: &Arc<Library>,
        options: Options,
        service: impl Service,
    ) -> Result<(Arc<Instance>, Session), String> {
        let link = Arc::new(Link {
            send_to_plugin: library.table.send_to_plugin,
            instance: AtomicUsize::new(0),
            sending: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
        });
        let (session, input) = Session::start_messages(ToPlugin(link.clone()), options, service);
        let inbox = Box::into_raw(Box::new(Inbox(input)));
        let instance = (library.table.open)(inbox.cast(), receive);
        if instance.is_null() {
            // SAFETY: the plugin failed to open and keeps no copy of `inbox`.
            drop(unsafe { Box::from_raw(inbox) });
            session.peer().close("the in-process plugin could not start");
            return Err("its open function failed (the plugin could not start)".to_owned());
        }
        link.instance.store(instance as usize, Ordering::SeqCst);
        let opened = Opened { inbox: inbox as usize, library: library.clone() };
        Ok((Arc::new(Instance { link, opened: Mutex::new(Some(opened)) }), session))
    }

    /// Closes the instance (once; later calls do nothing) and returns when it is done. Blocks.
    pub(crate) fn close(&self) {
        let opened = self.opened.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(opened) = opened {
            close_opened(&self.link, opened);
        }
    }

    /// Whether the instance was closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.opened.lock().unwrap_or_else(PoisonError::into_inner).is_none()
    }
}

/// Stops new calls into the plugin, waits for those in progress, ends the instance (blocking
/// until its threads are done), then frees the inbox; the library may be unloaded after this.
fn close_opened(link: &Link, opened: Opened) {
    link.closing.store(true, Ordering::SeqCst);
    while link.sending.load(Ordering::SeqCst) != 0 {
        std::thread::sleep(SENDING_POLL);
    }
    (opened.library.table.close)(link.instance.load(Ordering::SeqCst) as *mut c_void);
    // SAFETY: `inbox` came from `Box::into_raw` in `Instance::open`, and after `close` returned
    // the plugin never calls back with it.
    drop(unsafe { Box::from_raw(opened.inbox as *mut Inbox) });
    drop(opened.library);
}

impl Drop for Instance {
    /// An instance still open when the last reference goes (nobody shut it down) is closed on a
    /// thread of its own: closing waits for the plugin's last answers, which a drop, perhaps on
    /// a runtime's thread, must not.
    fn drop(&mut self) {
        if let Some(opened) = self.opened.get_mut().unwrap_or_else(PoisonError::into_inner).take() {
            let link = self.link.clone();
            let _ = std::thread::Builder::new()
                .name("tether-library-close".into())
                .spawn(move || close_opened(&link, opened));
        }
    }
}

//! `#[tether_host::interface]` generates its code against `tether-host` alone (the host does not
//! link the plugin SDK): a host-declared interface served and called over an in-memory session.

use tether_host::spec::Empty;
use tether_host::{HandlerError, Options, Router, Session};

/// A host-side interface, as a host declares the objects it serves as handles.
#[tether_host::interface(name = "greeter", versions = [1])]
pub trait Greeter {
    /// Says hello.
    async fn hello(&self, params: Empty) -> Result<String, HandlerError>;
}

struct English;

impl Greeter for English {
    async fn hello(&self, _: Empty) -> Result<String, HandlerError> {
        Ok("hello".to_owned())
    }
}

#[tokio::test]
async fn a_host_declared_interface_round_trips() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let caller = Session::start(ar, aw, Options::new(), Router::new());
    let _server =
        Session::start(br, bw, Options::new(), Router::new().interface(GreeterServer::new(English)));
    let greeting = GreeterClient::new(caller.peer().clone())
        .hello(&Empty {})
        .timeout(std::time::Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string());
    assert_eq!(greeting, Ok("hello".to_owned()));
}

//! The `counter` reference plugin (SPEC.md §9.3): each put asks the host's `adder` handle for the
//! new value and stores whatever the host answers.

#[path = "shared/counter.rs"]
mod shared;

fn main() {
    shared::plugin().serve()
}

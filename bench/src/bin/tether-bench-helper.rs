//! The raw pipe child of the benchmark, and its fresh process for memory figures (see
//! `tether_bench::child`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(tether_bench::child::main_with_args(&args));
}

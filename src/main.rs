//! The `hubsync` binary: everything lives in the library; see `hubsync::cli`.

fn main() {
    if let Err(e) = hubsync::cli::main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

//! The `hubsync` binary: everything lives in the library; see `hubsync::cli`.

use std::io::Write;

fn main() {
    if let Err(e) = hubsync::cli::main() {
        // `hubsync status | head`: the reader has what it wanted.
        if hubsync::cli::output_closed(&e) {
            return;
        }
        let _ = writeln!(std::io::stderr(), "error: {e:#}");
        std::process::exit(1);
    }
}

//! The `hubsync` binary: everything lives in the library; see `hubsync::cli`.

fn main() -> anyhow::Result<()> {
    hubsync::cli::main()
}

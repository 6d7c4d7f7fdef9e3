//! `shopkeep`: a thin entry point; everything lives in the library.

use clap::Parser;

/// mimalloc instead of the C library's allocator: a request allocates and frees many small
/// buffers, often on different threads (the runtime's workers, the database's), where glibc's
/// malloc spent a sixth of the server's time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    shopkeep::cli::run(shopkeep::cli::Cli::parse())
}

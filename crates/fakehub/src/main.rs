//! `sinkchat-fakehub --root DIR [--port N] [--throttle BYTES_PER_S]`: serves DIR (laid out as OWNER/REPO/FILE) with the
//! Hugging Face hub's routes on loopback, for `HF_ENDPOINT`. The endpoint is the first line of
//! output. The end-to-end tests start it for the Models screen; nothing ships it.

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;

/// Serve a folder with the Hugging Face hub's routes on loopback (for HF_ENDPOINT)
#[derive(Parser)]
#[command(name = "sinkchat-fakehub", version)]
struct Args {
    /// Folder laid out as OWNER/REPO/FILE
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    /// Port (0: any free one; the endpoint is printed on the first line)
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Send each file at most this many bytes per second (a slow connection)
    #[arg(long, value_name = "BYTES")]
    throttle: Option<u64>,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    tokio::runtime::Runtime::new()?.block_on(async move {
        let hub = sinkchat_fakehub::FakeHub::start(&args.root, args.port).await?;
        hub.set_faults(sinkchat_fakehub::Faults {
            throttle_bytes_per_s: args.throttle,
            ..Default::default()
        });
        println!("{}", hub.endpoint());
        std::io::stdout().flush()?;
        std::future::pending::<()>().await;
        Ok(())
    })
}

//! `sinkchat`: command-line tools over the engine: benchmarks and a terminal chat.
//!
//! ```text
//! sinkchat bench decode [--model F] [--prompt-tokens 512] [--gen 128] [--device cpu|gpu]
//!                       [--llamacpp PATH/llama-bench] [--out docs/bench/decode.json]
//! sinkchat bench kernels [--prompt-tokens 512] [--out docs/bench/kernels.json]
//! sinkchat eval kernels [--model F] [--side sinkchat|candle] [--book emma|--text FILE]
//!                       [--tokens 8192] [--out F.json]
//! sinkchat bench flat   [--model F] [--depths 2000,20000,200000] [--device cpu|gpu]
//!                       [--out docs/bench/flat.json]
//! sinkchat bench store  [--conversations 10000] [--messages 1000000] [--db-dir target/bench-store]
//!                       [--out docs/bench/store.json]
//! sinkchat eval requant [--book emma | --text FILE] [--tokens 8192]
//! sinkchat eval perplexity [--book emma | --text FILE] [--tokens N] [--mode streaming]
//!                          [--sinks 4] [--window 1024] [--stride 512] [--chunk 256]
//!                          [--out-dir target/perplexity]
//! sinkchat eval report [--dir target/perplexity] [--book emma] [--tokens 65536]
//!                      [--ablation-tokens 16384] [--out docs/bench/perplexity.json]
//!                      [--plot docs/perplexity.svg]
//! sinkchat serve [--port 8430] [--data-dir DIR] [--model FILE] [--ui DIR]
//!                                           SinkChat with no window: the web UI for a browser
//!                                           and the OpenAI-compatible API, on 127.0.0.1
//! sinkchat fake-hub --root DIR [--port 0]   serve DIR with the Hugging Face hub's routes on
//!                                           loopback (HF_ENDPOINT for tests and offline demos)
//! ```

mod bench;
mod corpus;
mod eval;
mod perplexity;
mod rdata;
mod serve;
mod store_bench;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    sinkchat_engine::tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let model = flag("--model")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| sinkchat_hub::active_model_path(&sinkchat_hub::data_dir()));
    let num = |name: &str, default: usize| -> Result<usize> {
        Ok(flag(name)
            .map(|v| v.parse())
            .transpose()?
            .unwrap_or(default))
    };
    if args.first().map(String::as_str) == Some("serve") {
        return serve::run(serve::Args {
            port: flag("--port")
                .map(|p| p.parse())
                .transpose()?
                .unwrap_or(8430),
            data_dir: flag("--data-dir").map(Into::into),
            model: flag("--model")
                .or_else(|| std::env::var("SINKCHAT_MODEL").ok())
                .map(Into::into),
            ui_dir: flag("--ui").map(Into::into),
        });
    }
    if args.first().map(String::as_str) == Some("fake-hub") {
        let root = flag("--root").context("fake-hub needs --root DIR")?;
        let port: u16 = flag("--port").map(|p| p.parse()).transpose()?.unwrap_or(0);
        let rt = tokio::runtime::Runtime::new()?;
        return rt.block_on(async move {
            let hub =
                sinkchat_hub::fakehub::FakeHub::start(std::path::Path::new(&root), port).await?;
            // The first line of output is the endpoint, for whoever started us.
            println!("{}", hub.endpoint());
            use std::io::Write;
            std::io::stdout().flush()?;
            std::future::pending::<()>().await;
            Ok(())
        });
    }
    let report = matches!(args.get(1).map(String::as_str), Some("report" | "kernels"));
    if !report {
        sinkchat_hub::check_model(&model).context("checking the model")?;
    }
    match (
        args.first().map(String::as_str),
        args.get(1).map(String::as_str),
    ) {
        (Some("bench"), Some("decode")) => bench::decode(
            &model,
            flag("--prompt-tokens")
                .map(|v| v.parse())
                .transpose()?
                .unwrap_or(512),
            flag("--gen").map(|v| v.parse()).transpose()?.unwrap_or(128),
            flag("--llamacpp").map(std::path::PathBuf::from),
            flag("--out").map(std::path::PathBuf::from),
            bench::device(flag("--device").as_deref())?,
        ),
        (Some("bench"), Some("kernels")) => bench::kernels(
            flag("--prompt-tokens")
                .map(|v| v.parse())
                .transpose()?
                .unwrap_or(512),
            flag("--out").map(std::path::PathBuf::from),
        ),
        (Some("bench"), Some("flat")) => {
            let depths = flag("--depths").unwrap_or_else(|| "2000,20000,200000".into());
            let depths: Vec<usize> = depths
                .split(',')
                .map(|d| d.parse())
                .collect::<Result<_, _>>()?;
            bench::flat(
                &model,
                &depths,
                flag("--out").map(std::path::PathBuf::from),
                bench::device(flag("--device").as_deref())?,
            )
        }
        (Some("bench"), Some("store")) => store_bench::run(
            &model,
            flag("--conversations").map(|v| v.parse()).transpose()?.unwrap_or(10_000),
            flag("--messages").map(|v| v.parse()).transpose()?.unwrap_or(1_000_000),
            flag("--db-dir").unwrap_or_else(|| "target/bench-store".into()).into(),
            flag("--out").map(std::path::PathBuf::from),
        ),
        (Some("eval"), Some(which @ ("requant" | "kernels"))) => {
            let (label, body) = match flag("--text") {
                Some(f) => (
                    f.clone(),
                    std::fs::read_to_string(&f).with_context(|| format!("reading {f}"))?,
                ),
                None => {
                    let book = flag("--book").unwrap_or_else(|| "emma".into());
                    let base = corpus::janeaustenr_base();
                    (book.clone(), rdata::read_text(&base, &book)?)
                }
            };
            let tokens = flag("--tokens").map(|v| v.parse()).transpose()?.unwrap_or(8192);
            if which == "kernels" {
                let out = flag("--out").map(std::path::PathBuf::from);
                let side = flag("--side").unwrap_or_else(|| "sinkchat".into());
                eval::kernels(&model, &label, &body, tokens, &side, out)
            } else {
                eval::requant(&model, &label, &body, tokens)
            }
        }
        (Some("eval"), Some("perplexity")) => {
            let mode = perplexity::parse_mode(
                &flag("--mode").unwrap_or_else(|| "streaming".into()),
                num("--sinks", 4)?,
                num("--window", 1024)?,
                num("--stride", 512)?,
            )?;
            let text = match flag("--text") {
                Some(f) => perplexity::TextSource::File(f.into()),
                None => perplexity::TextSource::Book(flag("--book").unwrap_or_else(|| "emma".into())),
            };
            perplexity::run(perplexity::RunArgs {
                model,
                text,
                tokens: flag("--tokens").map(|v| v.parse()).transpose()?,
                mode,
                chunk: num("--chunk", 256)?,
                out_dir: flag("--out-dir").unwrap_or_else(|| "target/perplexity".into()).into(),
            })
        }
        (Some("eval"), Some("report")) => {
            perplexity::report(perplexity::ReportArgs {
                dir: flag("--dir").unwrap_or_else(|| "target/perplexity".into()).into(),
                text: flag("--book").unwrap_or_else(|| "emma".into()),
                tokens: num("--tokens", 65536)?,
                ablation_tokens: num("--ablation-tokens", 16384)?,
                sinks: num("--sinks", 4)?,
                window: num("--window", 1024)?,
                out: flag("--out").map(Into::into),
                plot: flag("--plot").map(Into::into),
            })
        }
        _ => bail!(
            "usage: sinkchat bench decode|flat [--model FILE] [--device cpu|gpu] [--out FILE.json]\n       sinkchat eval requant --text FILE [--tokens N]\n       sinkchat eval perplexity [--book emma|--text FILE] [--mode dense|window|recompute|streaming] [--sinks S] [--window W] [--tokens N]\n       sinkchat eval report [--dir D] [--out FILE.json] [--plot FILE.svg]"
        ),
    }
}

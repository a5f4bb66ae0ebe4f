//! `sinkchat-bench`: SinkChat's lab, apart from the shipped `sinkchat` command: speed
//! benchmarks (`decode`, `kernels`, `flat`, `recall`, `store`) and quality evaluations
//! (`eval ...`), each writing the JSON that `docs/BENCHMARKS.md` quotes. Never installed: the
//! package carries `sinkchat` (serve) and the app only. `sinkchat-bench --help` and
//! `sinkchat-bench <command> --help` list every command and flag.

mod bench;
mod corpus;
mod eval;
mod load;
mod meaning_bench;
mod memory;
mod parity;
mod perplexity;
mod progress;
mod rdata;
mod recall_bench;
mod recall_ppl;
mod remote;
mod store_bench;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sinkchat_engine::KvPrecision;

/// SinkChat's benchmarks and evaluations (results as JSON, see docs/BENCHMARKS.md).
#[derive(Parser)]
#[command(name = "sinkchat-bench", version, about, long_about = None, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ModelArg {
    /// Model file; default: the model chosen in the app (or SinkChat's default model)
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
}

impl ModelArg {
    /// The model, checked to be there and whole.
    fn checked(&self) -> Result<PathBuf> {
        let model = self
            .model
            .clone()
            .unwrap_or_else(|| sinkchat_hub::active_model_path(&sinkchat_hub::data_dir()));
        sinkchat_hub::check_model(&model).context("checking the model")?;
        Ok(model)
    }
}

/// The meaning model's folder: the one given, else the app's (in its models folder).
fn meaning_dir(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        sinkchat_hub::models_dir(&sinkchat_hub::data_dir()).join(sinkchat_engine::embed::FOLDER)
    })
}

#[derive(clap::Args)]
struct TextArg {
    /// One of the Austen novels of r-cran-janeaustenr (emma, persuasion, ...)
    #[arg(long, default_value = "emma", conflicts_with = "text")]
    book: String,
    /// A UTF-8 text file instead of a novel
    #[arg(long, value_name = "FILE")]
    text: Option<PathBuf>,
}

impl TextArg {
    fn source(self) -> perplexity::TextSource {
        match self.text {
            Some(f) => perplexity::TextSource::File(f),
            None => perplexity::TextSource::Book(self.book),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Prompt and decode speed, optionally beside llama-bench
    Decode {
        #[command(flatten)]
        model: ModelArg,
        #[arg(long, default_value_t = 512)]
        prompt_tokens: usize,
        /// Tokens to generate
        #[arg(long, default_value_t = 128)]
        gen: usize,
        /// llama.cpp's llama-bench, to measure the same file beside it
        #[arg(long, value_name = "PATH")]
        llamacpp: Option<PathBuf>,
        #[arg(long, value_name = "FILE.json")]
        out: Option<PathBuf>,
        /// cpu or gpu
        #[arg(long, default_value = "cpu")]
        device: String,
        /// How the cache stores K and V: f16 (the app's default) or f32
        #[arg(long, default_value = "f16", value_parser = parse_kv)]
        kv: KvPrecision,
    },
    /// Each weight format's matmul alone, ours against candle's, in GMAC/s
    Kernels {
        #[arg(long, default_value_t = 512)]
        prompt_tokens: usize,
        #[arg(long, value_name = "FILE.json")]
        out: Option<PathBuf>,
    },
    /// Cost per token as one conversation grows
    Flat {
        #[command(flatten)]
        model: ModelArg,
        /// Comma-separated depths in tokens
        #[arg(long, default_value = "2000,20000,200000", value_delimiter = ',')]
        depths: Vec<usize>,
        #[arg(long, value_name = "FILE.json")]
        out: Option<PathBuf>,
        /// cpu or gpu
        #[arg(long, default_value = "cpu")]
        device: String,
        /// How the cache stores K and V: f16 (the app's default) or f32
        #[arg(long, default_value = "f16", value_parser = parse_kv)]
        kv: KvPrecision,
    },
    /// Recall beyond the window: facts asked about after 2x, 10x, 50x the window, with recall
    /// off, on, and the fact pinned (see docs/BENCHMARKS.md)
    Recall {
        #[command(flatten)]
        model: ModelArg,
        /// Scripted conversations per question set (one fact each; the paraphrase set has 52)
        #[arg(long, default_value_t = 52)]
        conversations: usize,
        /// The memory window the chats run with, in tokens
        #[arg(long, default_value_t = 256)]
        window: usize,
        /// Comma-separated distances, in windows
        #[arg(long, default_value = "2,10,50", value_delimiter = ',')]
        distances: Vec<usize>,
        /// The meaning model's folder (all-MiniLM-L6-v2), for recall by meaning; default: the
        /// app's (in the models folder)
        #[arg(long, value_name = "DIR")]
        meaning: Option<PathBuf>,
        /// Which question sets: `words` (asked in the fact's words), `paraphrase` (in other
        /// words, crates/bench/data/paraphrase.json), or both
        #[arg(long, default_value = "words,paraphrase", value_delimiter = ',')]
        sets: Vec<String>,
        /// Ask the word-matched set with the fact pinned too
        #[arg(long)]
        pinned: bool,
        /// Recall modes each question is asked with: off, words, meaning
        #[arg(long, default_value = "off,words,meaning", value_delimiter = ',')]
        modes: Vec<recall_bench::Mode>,
        /// Skip asking each question with the fact still in the window
        #[arg(long)]
        no_in_window: bool,
        #[arg(long, value_name = "FILE.json")]
        out: Option<PathBuf>,
    },
    /// What finding by meaning costs: time per message, size per 1,000,000 messages, search
    /// over 1,000,000, a reply while a backlog is embedded (#36)
    Meaning {
        #[command(flatten)]
        model: ModelArg,
        #[command(flatten)]
        text: TextArg,
        #[arg(long, value_name = "DIR")]
        meaning: Option<PathBuf>,
        #[arg(long, default_value_t = 10_000)]
        conversations: usize,
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        #[arg(long, value_name = "DIR", default_value = "target/bench-store")]
        db_dir: PathBuf,
        #[arg(long, value_name = "FILE.json")]
        out: Option<PathBuf>,
    },
    /// The transcript store at scale: first page, search, reopening a chat
    Store {
        #[command(flatten)]
        model: ModelArg,
        #[arg(long, default_value_t = 10_000)]
        conversations: usize,
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        #[arg(long, value_name = "DIR", default_value = "target/bench-store")]
        db_dir: PathBuf,
        #[arg(long, value_name = "FILE.json")]
        out: Option<PathBuf>,
    },
    /// One long chat's memory: a cache per kind of layer against one shape for all layers and
    /// a dense cache (Gemma 3's sliding layers; see docs/BENCHMARKS.md)
    Memory {
        #[command(flatten)]
        model: ModelArg,
        /// Tokens streamed through one conversation
        #[arg(long, default_value_t = 100_000)]
        tokens: usize,
        #[arg(long, value_name = "FILE.json")]
        out: Option<PathBuf>,
    },
    /// Does one client's maximal prompt hold up the others? Four clients chatting through a
    /// real `sinkchat serve`, alone and while a fifth sends the largest request it takes
    Load {
        #[command(flatten)]
        model: ModelArg,
        /// The `sinkchat` program to serve with (default: the one beside this bench)
        #[arg(long, value_name = "PATH")]
        sinkchat: Option<PathBuf>,
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Questions each client asks, one after another
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Tokens of each answer
        #[arg(long, default_value_t = 16)]
        max_tokens: usize,
        #[arg(long, value_name = "FILE.json")]
        out: Option<PathBuf>,
    },
    /// A conversation several times a server's context against llama.cpp's server (started
    /// here): evicting one message at a time, in blocks, and in blocks with its cache reuse
    Remote {
        #[command(flatten)]
        model: ModelArg,
        #[arg(long, default_value_t = 200)]
        turns: usize,
        /// The server's context (llama-server -c)
        #[arg(long, default_value_t = 1024)]
        context: usize,
        /// Tokens of each answer at most (the reply's room)
        #[arg(long, default_value_t = 24)]
        max_tokens: usize,
        #[arg(long, value_name = "FILE.json")]
        out: Option<PathBuf>,
    },
    /// Quality evaluations: perplexity, kernels against candle's
    #[command(subcommand)]
    Eval(Eval),
    /// The Models screen's speed estimate (calibrated as the app calibrates it, on the
    /// smallest file) against each file's measured decode speed (`decode`'s figure)
    Recommend {
        /// Model files (one row each)
        #[arg(long = "model", value_name = "FILE", required = true)]
        models: Vec<PathBuf>,
        /// Tokens to generate per measured round
        #[arg(long, default_value_t = 128)]
        gen: usize,
        #[arg(long, value_name = "FILE.json")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum Eval {
    /// Perplexity with the weights as stored against requantized to Q8_0
    Requant {
        #[command(flatten)]
        model: ModelArg,
        #[command(flatten)]
        text: TextArg,
        #[arg(long, default_value_t = 8192)]
        tokens: usize,
    },
    /// Perplexity through our kernels or candle's
    Kernels {
        #[command(flatten)]
        model: ModelArg,
        #[command(flatten)]
        text: TextArg,
        #[arg(long, default_value_t = 8192)]
        tokens: usize,
        /// sinkchat or candle
        #[arg(long, default_value = "sinkchat")]
        side: String,
        /// Tokens fed per forward: 1 runs every token through the one-token paths (another
        /// order of sums than a chunk's: the model's own noise floor)
        #[arg(long, default_value_t = 256)]
        chunk: usize,
        /// Move each RMS-norm weight by one ulp, pseudo-randomly from this seed: the same model
        /// to float precision with every rounding downstream free to land elsewhere (the spread
        /// over seeds is what rounding alone does to the perplexity)
        #[arg(long, value_name = "SEED")]
        nudge: Option<u64>,
        #[arg(long, value_name = "FILE.json")]
        out: Option<PathBuf>,
    },
    /// Print a novel's text (for the reference scripts, `scripts/meaning-rule.py`)
    Text {
        #[command(flatten)]
        text: TextArg,
    },
    /// Perplexity of a text put into a chat paragraph by paragraph, with recall off and on
    /// (is recall silent on running text? see docs/BENCHMARKS.md)
    RecallPerplexity {
        #[command(flatten)]
        model: ModelArg,
        #[command(flatten)]
        text: TextArg,
        /// Tokens to score
        #[arg(long, default_value_t = 32768)]
        tokens: usize,
        #[arg(long, default_value_t = 4)]
        sinks: usize,
        /// The cache, sinks included
        #[arg(long, default_value_t = 1024)]
        window: usize,
        /// Tokens fed per forward pass
        #[arg(long, default_value_t = 256)]
        chunk: usize,
        #[arg(long, value_name = "FILE.json")]
        out: Option<PathBuf>,
        /// Print each paragraph that recalled something, and what
        #[arg(long)]
        show_recalled: bool,
        /// The meaning model's folder: recall looks up by meaning too, as the chat does;
        /// default: the app's (in the models folder); `none`: by words only
        #[arg(long, value_name = "DIR")]
        meaning: Option<PathBuf>,
    },
    /// Perplexity over a long text in one of four modes
    Perplexity {
        #[command(flatten)]
        model: ModelArg,
        #[command(flatten)]
        text: TextArg,
        /// Tokens to score (default: the whole text)
        #[arg(long)]
        tokens: Option<usize>,
        /// dense, window, recompute or streaming
        #[arg(long, default_value = "streaming")]
        mode: String,
        #[arg(long, default_value_t = 4)]
        sinks: usize,
        #[arg(long, default_value_t = 1024)]
        window: usize,
        #[arg(long, default_value_t = 512)]
        stride: usize,
        /// Tokens fed per forward pass
        #[arg(long, default_value_t = 256)]
        chunk: usize,
        #[arg(long, value_name = "DIR", default_value = "target/perplexity")]
        out_dir: PathBuf,
        /// How the cache stores K and V: f32 (exact, the reference) or f16
        #[arg(long, default_value = "f32", value_parser = parse_kv)]
        kv: KvPrecision,
    },
    /// SinkChat against llama.cpp on real weights: llama-perplexity's first chunk of a text,
    /// scored by both (see docs/BENCHMARKS.md)
    Parity {
        /// Model files (one row each)
        #[arg(long = "model", value_name = "FILE", required = true)]
        models: Vec<PathBuf>,
        #[command(flatten)]
        text: TextArg,
        /// The context of the chunk scored, in tokens
        #[arg(long, default_value_t = 2048)]
        ctx: usize,
        /// llama.cpp's llama-perplexity (scripts/llamacpp.sh llama-perplexity builds it)
        #[arg(long, value_name = "PATH")]
        llamacpp: PathBuf,
        #[arg(long, value_name = "FILE.json")]
        out: Option<PathBuf>,
    },
    /// Gathers perplexity runs into one report and a plot
    Report {
        #[arg(long, value_name = "DIR", default_value = "target/perplexity")]
        dir: PathBuf,
        #[arg(long, default_value = "emma")]
        book: String,
        #[arg(long, default_value_t = 65536)]
        tokens: usize,
        #[arg(long, default_value_t = 16384)]
        ablation_tokens: usize,
        #[arg(long, default_value_t = 4)]
        sinks: usize,
        #[arg(long, default_value_t = 1024)]
        window: usize,
        #[arg(long, value_name = "FILE.json")]
        out: Option<PathBuf>,
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
    },
}

/// `--kv`: how a cache stores K and V.
fn parse_kv(s: &str) -> Result<KvPrecision, String> {
    match s {
        "f16" => Ok(KvPrecision::F16),
        "f32" => Ok(KvPrecision::F32),
        _ => Err(format!("{s:?} is not a cache precision: use f16 or f32")),
    }
}

/// The text to score: a file, or a novel from r-cran-janeaustenr.
fn read_text(t: &TextArg) -> Result<(String, String)> {
    match &t.text {
        Some(f) => Ok((
            f.display().to_string(),
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
        )),
        None => Ok((
            t.book.clone(),
            rdata::read_text(&corpus::janeaustenr_base(), &t.book)?,
        )),
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    sinkchat_engine::tune_allocator();
    sinkchat_chat::logging::init(None, "warn");
    match cli.command {
        Command::Recommend { models, gen, out } => bench::recommend(&models, gen, out),
        Command::Decode {
            model,
            prompt_tokens,
            gen,
            llamacpp,
            out,
            device,
            kv,
        } => bench::decode(
            &model.checked()?,
            prompt_tokens,
            gen,
            llamacpp,
            out,
            bench::device(Some(&device))?,
            kv,
        ),
        Command::Kernels { prompt_tokens, out } => bench::kernels(prompt_tokens, out),
        Command::Flat {
            model,
            depths,
            out,
            device,
            kv,
        } => bench::flat(
            &model.checked()?,
            &depths,
            out,
            bench::device(Some(&device))?,
            kv,
        ),
        Command::Recall {
            model,
            conversations,
            window,
            distances,
            meaning,
            sets,
            pinned,
            modes,
            no_in_window,
            out,
        } => recall_bench::run(recall_bench::Args {
            model: model.checked()?,
            conversations,
            window,
            distances,
            meaning: meaning_dir(meaning),
            sets,
            pinned,
            modes,
            in_window: !no_in_window,
            out,
        }),
        Command::Meaning {
            model,
            text,
            meaning,
            conversations,
            messages,
            db_dir,
            out,
        } => meaning_bench::run(meaning_bench::Args {
            model: model.checked()?,
            meaning: meaning_dir(meaning),
            text: text.source(),
            messages,
            conversations,
            db_dir,
            out,
        }),
        Command::Store {
            model,
            conversations,
            messages,
            db_dir,
            out,
        } => store_bench::run(&model.checked()?, conversations, messages, db_dir, out),
        Command::Memory { model, tokens, out } => memory::run(&model.checked()?, tokens, out),
        Command::Load {
            model,
            sinkchat,
            clients,
            rounds,
            max_tokens,
            out,
        } => load::run(load::Args {
            sinkchat,
            model: model.checked()?,
            clients,
            rounds,
            max_tokens,
            out,
        }),
        Command::Remote {
            model,
            turns,
            context,
            max_tokens,
            out,
        } => {
            let args = remote::Args {
                model: model.checked()?,
                turns,
                context,
                max_tokens,
                out,
            };
            tokio::runtime::Runtime::new()?.block_on(remote::run(args))
        }
        Command::Eval(Eval::Requant {
            model,
            text,
            tokens,
        }) => {
            let (label, body) = read_text(&text)?;
            eval::requant(&model.checked()?, &label, &body, tokens)
        }
        Command::Eval(Eval::Kernels {
            model,
            text,
            tokens,
            side,
            chunk,
            nudge,
            out,
        }) => {
            let (label, body) = read_text(&text)?;
            let how = eval::KernelRun { side, chunk, nudge };
            eval::kernels(&model.checked()?, &label, &body, tokens, how, out)
        }
        Command::Eval(Eval::Perplexity {
            model,
            text,
            tokens,
            mode,
            sinks,
            window,
            stride,
            chunk,
            out_dir,
            kv,
        }) => perplexity::run(perplexity::RunArgs {
            model: model.checked()?,
            text: text.source(),
            tokens,
            mode: perplexity::parse_mode(&mode, sinks, window, stride)?,
            chunk,
            out_dir,
            kv,
        }),
        Command::Eval(Eval::RecallPerplexity {
            model,
            text,
            tokens,
            sinks,
            window,
            chunk,
            out,
            show_recalled,
            meaning,
        }) => recall_ppl::run(recall_ppl::Args {
            model: model.checked()?,
            text: text.source(),
            tokens,
            sinks,
            window,
            chunk,
            out,
            show: show_recalled,
            meaning: match meaning {
                Some(m) if m.as_os_str() == "none" => None,
                m => Some(meaning_dir(m)),
            },
        }),
        Command::Eval(Eval::Parity {
            models,
            text,
            ctx,
            llamacpp,
            out,
        }) => {
            let (label, body) = read_text(&text)?;
            parity::run(&models, &label, &body, ctx, &llamacpp, out)
        }
        Command::Eval(Eval::Text { text }) => {
            print!("{}", text.source().read()?);
            Ok(())
        }
        Command::Eval(Eval::Report {
            dir,
            book,
            tokens,
            ablation_tokens,
            sinks,
            window,
            out,
            plot,
        }) => perplexity::report(perplexity::ReportArgs {
            dir,
            text: book,
            tokens,
            ablation_tokens,
            sinks,
            window,
            out,
            plot,
        }),
    }
}

//! `sinkchat-bench eval perplexity` and `sinkchat-bench eval report`: the paper's perplexity experiment
//! (Xiao et al. 2023, Figure 3 and Tables 2 and 6) on our own engine and model.
//!
//! Each run writes `<dir>/<label>.csv` (`index,token,nll`: the NLL in nats of the token at
//! `index` given what the mode lets it see) and `<dir>/<label>.json` (its summary). The report
//! reads them all back and computes every figure from the CSVs, so a long run also serves for
//! its shorter prefixes (the whole-novel streaming run gives the 65K-token figure).

use std::fmt::Write as _;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use serde_json::{json, Value};
use sinkchat_engine::eval::{self, Mode};
use sinkchat_engine::model::read_gguf_header;
use sinkchat_engine::KvPrecision;
use sinkchat_engine::{GgufTokenizer, LoadOptions, Model};

pub struct RunArgs {
    pub model: PathBuf,
    /// A janeaustenr object name (`emma`, ...) or a text file.
    pub text: TextSource,
    pub tokens: Option<usize>,
    pub mode: Mode,
    pub chunk: usize,
    pub out_dir: PathBuf,
    /// The cache's precision (f32: the reference).
    pub kv: KvPrecision,
}

pub enum TextSource {
    Book(String),
    File(PathBuf),
}

impl TextSource {
    pub(crate) fn label(&self) -> String {
        match self {
            TextSource::Book(b) => b.clone(),
            TextSource::File(p) => p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "text".into()),
        }
    }

    pub(crate) fn read(&self) -> Result<String> {
        match self {
            TextSource::Book(b) => crate::rdata::read_text(&crate::corpus::janeaustenr_base(), b)
                .with_context(|| {
                    format!(
                        "reading {b} from janeaustenr at {} (scripts/setup.sh test fetches it)",
                        crate::corpus::janeaustenr_base().display()
                    )
                }),
            TextSource::File(p) => {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
            }
        }
    }
}

pub fn parse_mode(name: &str, sinks: usize, window: usize, stride: usize) -> Result<Mode> {
    Ok(match name {
        "dense" => Mode::Dense,
        "window" => Mode::Window { window },
        "recompute" => Mode::Recompute { window, stride },
        "streaming" => Mode::Streaming { sinks, window },
        m => bail!("unknown mode {m:?}: use dense, window, recompute or streaming"),
    })
}

fn label(text: &str, mode: &Mode, tokens: usize) -> String {
    match mode {
        Mode::Dense => format!("{text}-dense-n{tokens}"),
        Mode::Window { window } => format!("{text}-window-w{window}-n{tokens}"),
        Mode::Recompute { window, stride } => {
            format!("{text}-recompute-w{window}-r{stride}-n{tokens}")
        }
        Mode::Streaming { sinks, window } => {
            format!("{text}-streaming-s{sinks}-w{window}-n{tokens}")
        }
    }
}

/// Tokens of the text, as the model's own tokenizer splits it (no BOS: SmolLM2 adds none).
pub fn tokenize(model: &Path, text: &str) -> Result<Vec<u32>> {
    let tk = GgufTokenizer::from_gguf(&read_gguf_header(model)?)?;
    Ok(tk.encode(text, false)?)
}

pub fn run(args: RunArgs) -> Result<()> {
    let text = args.text.read()?;
    let mut ids = tokenize(&args.model, &text)?;
    eprintln!("{}: {} tokens", args.text.label(), ids.len());
    if let Some(n) = args.tokens {
        ids.truncate(n);
    }
    let model = Model::load(&args.model, &Device::Cpu, LoadOptions::default())?;
    let mut name = label(&args.text.label(), &args.mode, ids.len());
    if args.kv == KvPrecision::F16 {
        name.push_str("-kvf16");
    }
    std::fs::create_dir_all(&args.out_dir)?;
    let mut progress = crate::progress::Progress::new(name.clone(), ids.len() as u64, "tokens");
    let result = eval::run_with(&model, &ids, args.mode, args.kv, args.chunk, 8192, |p| {
        progress.set(p.done as u64);
    })?;
    progress.finish();
    let csv = args.out_dir.join(format!("{name}.csv"));
    let mut w = BufWriter::new(std::fs::File::create(&csv)?);
    writeln!(w, "index,token,nll")?;
    for &(i, nll) in &result.nll {
        writeln!(w, "{i},{},{nll:.6}", ids[i])?;
    }
    w.flush()?;
    let summary = json!({
        "text": args.text.label(),
        "model": args.model.file_name().map(|s| s.to_string_lossy().into_owned()),
        "weights": model.weight_type().to_string(),
        "mode": result.mode.name(),
        "sinks": result.mode.sinks(),
        "window": result.mode.window(ids.len()),
        "stride": match result.mode { Mode::Recompute { stride, .. } => stride, _ => 1 },
        "tokens": result.tokens,
        "scored": result.nll.len(),
        "perplexity": result.perplexity,
        "ms_per_token": result.ms_per_token,
        "peak_rss_mib": result.peak_rss_mib,
        "chunk": args.chunk,
        "cache_precision": args.kv,
        "segments": result.segments,
        "csv": csv.file_name().map(|s| s.to_string_lossy().into_owned()),
    });
    std::fs::write(
        args.out_dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    println!(
        "{name}: perplexity {:.3} over {} tokens, {:.2} ms/token, peak {:.0} MiB",
        result.perplexity,
        result.nll.len(),
        result.ms_per_token,
        result.peak_rss_mib
    );
    Ok(())
}

/// One finished run read back from disk.
struct Run {
    summary: Value,
    nll: Vec<(usize, f64)>,
}

impl Run {
    fn mode(&self) -> &str {
        self.summary["mode"].as_str().unwrap_or("")
    }
    fn n(&self, key: &str) -> usize {
        self.summary[key].as_u64().unwrap_or(0) as usize
    }
    /// Perplexity over the tokens with index below `limit` (and at or above `from`).
    fn ppl(&self, from: usize, limit: usize) -> f64 {
        let part: Vec<(usize, f64)> = self
            .nll
            .iter()
            .copied()
            .filter(|&(i, _)| i >= from && i < limit)
            .collect();
        eval::perplexity_of(&part)
    }
}

fn load_runs(dir: &Path) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "json") {
            let summary: Value = serde_json::from_str(&std::fs::read_to_string(&p)?)
                .with_context(|| format!("reading {}", p.display()))?;
            let csv = dir.join(summary["csv"].as_str().context("summary without csv")?);
            let nll = read_csv(&csv)?;
            runs.push(Run { summary, nll });
        }
    }
    Ok(runs)
}

pub fn read_csv(path: &Path) -> Result<Vec<(usize, f64)>> {
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (k, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if k == 0 {
            continue;
        }
        let mut it = line.split(',');
        let i: usize = it.next().context("empty line")?.parse()?;
        let nll: f64 = it.nth(1).context("no nll")?.parse()?;
        out.push((i, nll));
    }
    Ok(out)
}

pub struct ReportArgs {
    pub dir: PathBuf,
    pub text: String,
    pub tokens: usize,
    pub ablation_tokens: usize,
    pub sinks: usize,
    pub window: usize,
    pub out: Option<PathBuf>,
    pub plot: Option<PathBuf>,
}

fn round(x: f64, d: i32) -> f64 {
    let m = 10f64.powi(d);
    (x * m).round() / m
}

pub fn report(a: ReportArgs) -> Result<()> {
    let runs: Vec<Run> = load_runs(&a.dir)?
        .into_iter()
        .filter(|r| r.summary["text"] == a.text.as_str())
        .collect();
    // The longest run matching a predicate.
    let find = |pred: &dyn Fn(&Run) -> bool| -> Option<&Run> {
        runs.iter()
            .filter(|r| pred(r))
            .max_by_key(|r| r.n("tokens"))
    };
    let (s, w, t) = (a.sinks, a.window, a.tokens);
    let streaming = find(&|r| r.mode() == "streaming" && r.n("sinks") == s && r.n("window") == w)
        .context("no streaming run at these sinks and window")?;
    let window = find(&|r| r.mode() == "window" && r.n("window") == w);
    let recompute = find(&|r| r.mode() == "recompute" && r.n("window") == w);
    let dense = find(&|r| r.mode() == "dense");

    let mut table = String::new();
    writeln!(
        table,
        "| mode | sinks | window | tokens scored | perplexity | ms per token | peak memory (MiB) |"
    )?;
    writeln!(table, "|---|---|---|---|---|---|---|")?;
    let mut modes = serde_json::Map::new();
    let mut row = |name: &str, r: &Run, limit: usize, note: &str| -> Result<f64> {
        let scored = r.nll.iter().filter(|(i, _)| *i < limit).count();
        let ppl = r.ppl(0, limit);
        writeln!(
            table,
            "| {name}{note} | {} | {} | {scored} | {:.3} | {:.2} | {:.0} |",
            r.n("sinks"),
            r.n("window"),
            ppl,
            r.summary["ms_per_token"].as_f64().unwrap_or(f64::NAN),
            r.summary["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
        )?;
        modes.insert(name.to_string(), json!(round(ppl, 3)));
        Ok(ppl)
    };
    let mut extra = serde_json::Map::new();
    if let Some(d) = dense {
        let n = d.n("tokens").min(t);
        row("dense", d, n, &format!(" (first {n} tokens)"))?;
        extra.insert(
            "dense".into(),
            json!({
                "tokens": n,
                "perplexity_before_8192": round(d.ppl(0, 8192.min(n)), 3),
                "perplexity_after_8192": round(d.ppl(8192, n), 3),
            }),
        );
    }
    if let Some(r) = window {
        row("window", r, t, "")?;
    }
    if let Some(r) = recompute {
        let stride = r.n("stride");
        let ppl = row("recompute", r, t, &format!(" (every {stride}th token)"))?;
        // Streaming on exactly the tokens recompute scored.
        let idx: std::collections::HashSet<usize> =
            r.nll.iter().map(|&(i, _)| i).filter(|&i| i < t).collect();
        let same: Vec<(usize, f64)> = streaming
            .nll
            .iter()
            .copied()
            .filter(|(i, _)| idx.contains(i))
            .collect();
        let sppl = eval::perplexity_of(&same);
        extra.insert(
            "recompute_sample".into(),
            json!({
                "stride": stride,
                "tokens_scored": idx.len(),
                "recompute": round(ppl, 3),
                "streaming_same_tokens": round(sppl, 3),
                "streaming_vs_recompute_percent": round((sppl / ppl - 1.0) * 100.0, 2),
            }),
        );
    }
    row("streaming", streaming, t, "")?;

    // Ablations over the first `ablation_tokens`.
    let at = a.ablation_tokens;
    let mut sinks_ab = serde_json::Map::new();
    let mut abl = String::new();
    writeln!(abl, "| cache | perplexity (first {at} tokens) |")?;
    writeln!(abl, "|---|---|")?;
    for k in [0usize, 1, 2, 4, 8] {
        let r = if k == 0 {
            find(&|r| r.mode() == "window" && r.n("window") == w)
        } else {
            find(&|r| r.mode() == "streaming" && r.n("sinks") == k && r.n("window") == w)
        };
        if let Some(r) = r.filter(|r| r.n("tokens") >= at) {
            let p = r.ppl(0, at);
            sinks_ab.insert(k.to_string(), json!(round(p, 3)));
            writeln!(abl, "| {k} sinks + {} window | {p:.3} |", w - k)?;
        }
    }
    let mut window_ab = serde_json::Map::new();
    for ww in [256usize, 512, 1024, 2048] {
        let r = find(&|r| r.mode() == "streaming" && r.n("sinks") == s && r.n("window") == ww);
        if let Some(r) = r.filter(|r| r.n("tokens") >= at) {
            let p = r.ppl(0, at);
            window_ab.insert(ww.to_string(), json!(round(p, 3)));
            writeln!(
                abl,
                "| {s} sinks + {} window (cache {ww}) | {p:.3} |",
                ww - s
            )?;
        }
    }

    // Flatness over the longest streaming run.
    let segs = streaming.summary["segments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let seg = |i: usize, k: &str| segs.get(i).and_then(|s| s[k].as_f64()).unwrap_or(f64::NAN);
    let last = segs.len().saturating_sub(2); // the final stretch may be short
    let whole = json!({
        "tokens": streaming.n("tokens"),
        "perplexity": round(streaming.ppl(0, usize::MAX), 3),
        "ms_per_token": round(streaming.summary["ms_per_token"].as_f64().unwrap_or(f64::NAN), 3),
        "first_segment_ms_per_token": round(seg(0, "ms_per_token"), 3),
        "last_full_segment_ms_per_token": round(seg(last, "ms_per_token"), 3),
        "first_segment_rss_mib": round(seg(0, "rss_mib"), 1),
        "last_full_segment_rss_mib": round(seg(last, "rss_mib"), 1),
        "segments": segs,
    });

    let out = json!({
        "text": a.text,
        "model": streaming.summary["model"],
        "tokens": t,
        "sinks": s,
        "window": w,
        "modes": modes,
        "sinks_ablation": sinks_ab,
        "window_ablation": window_ab,
        "ablation_tokens": at,
        "details": extra,
        "streaming_whole_text": whole,
    });
    println!("{table}\n{abl}");
    println!("{}", serde_json::to_string_pretty(&out["details"])?);
    if let Some(p) = &a.out {
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(p, serde_json::to_string_pretty(&out)? + "\n")?;
    }
    if let Some(p) = &a.plot {
        let mut series: Vec<(&str, &str, &Run)> = Vec::new();
        if let Some(d) = dense {
            series.push(("dense", "#d62728", d));
        }
        if let Some(r) = window {
            series.push(("window (no sinks)", "#ff7f0e", r));
        }
        if let Some(r) = recompute {
            series.push(("recompute (sampled: noisy)", "#2ca02c", r));
        }
        series.push(("StreamingLLM (4 sinks)", "#1f77b4", streaming));
        std::fs::write(p, plot(&series, t, s, w, &a.text))?;
    }
    Ok(())
}

/// Running perplexity (exp of the mean NLL over the last `span` tokens) against tokens, on a
/// log scale, as an SVG.
fn plot(
    series: &[(&str, &str, &Run)],
    limit: usize,
    sinks: usize,
    window: usize,
    text: &str,
) -> String {
    let span = 4096usize;
    let (w, h, l, r, t, b) = (900.0, 480.0, 70.0, 20.0, 40.0, 50.0);
    type Curve<'a> = (&'a str, &'a str, Vec<(f64, f64)>);
    let curves: Vec<Curve> = series
        .iter()
        .map(|(name, color, run)| {
            let pts: Vec<(usize, f64)> = run
                .nll
                .iter()
                .copied()
                .filter(|(i, _)| *i < limit)
                .collect();
            // A sampled mode (recompute) averages over 16 samples at least, not 2 or 3.
            let gap = match (pts.first(), pts.last()) {
                (Some(a), Some(b)) if pts.len() > 1 => (b.0 - a.0) / (pts.len() - 1),
                _ => 1,
            };
            let span = span.max(16 * gap);
            let mut out = Vec::new();
            let mut lo = 0;
            let mut sum = 0.0;
            let step = (pts.len() / 400).max(1);
            for hi in 0..pts.len() {
                sum += pts[hi].1;
                while pts[hi].0 - pts[lo].0 >= span {
                    sum -= pts[lo].1;
                    lo += 1;
                }
                if (hi % step == 0 || gap > 1) && pts[hi].0 >= 512 && (gap == 1 || hi - lo + 1 >= 8)
                {
                    out.push((pts[hi].0 as f64, (sum / (hi - lo + 1) as f64).exp()));
                }
            }
            (*name, *color, out)
        })
        .collect();
    let xmax = limit as f64;
    let all: Vec<f64> = curves
        .iter()
        .flat_map(|c| c.2.iter().map(|p| p.1))
        .collect();
    let ymin = all
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .max(1.0)
        .log10()
        .floor();
    let ymax = all
        .iter()
        .copied()
        .fold(0.0, f64::max)
        .max(10.0)
        .log10()
        .ceil();
    let x = |v: f64| l + (w - l - r) * v / xmax;
    let y = |v: f64| t + (h - t - b) * (1.0 - (v.log10() - ymin) / (ymax - ymin).max(1e-9));
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">Perplexity of {text} (running mean over {span} tokens; recompute over 16 samples), cache {window} = {sinks} sinks + {} window</text>\n",
        w / 2.0,
        window - sinks
    );
    // Axes, grid and labels.
    let mut dec = ymin;
    while dec <= ymax + 1e-9 {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powf(dec);
            if v.log10() > ymax + 1e-9 {
                break;
            }
            let _ = writeln!(svg, "<line x1=\"{l}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v}</text>", w - r, y(v), y(v), l - 6.0, y(v) + 4.0);
        }
        dec += 1.0;
    }
    let xstep = if xmax > 100_000.0 {
        20_000.0
    } else if xmax > 30_000.0 {
        8192.0
    } else {
        2048.0
    };
    let mut xv = 0.0;
    while xv <= xmax {
        let _ = writeln!(svg, "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{t}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}K</text>", x(xv), x(xv), h - b, x(xv), h - b + 16.0, (xv / 1024.0).round());
        xv += xstep;
    }
    let _ = writeln!(svg, "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{t}\" y2=\"{}\" stroke=\"#999\" stroke-dasharray=\"4 3\"/><text x=\"{:.1}\" y=\"{}\" fill=\"#666\">trained context 8192</text>", x(8192.0), x(8192.0), h - b, x(8192.0) + 4.0, t + 14.0);
    let _ = writeln!(svg, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">tokens of input</text><text transform=\"translate(16 {}) rotate(-90)\" text-anchor=\"middle\">perplexity (log scale)</text>", (l + w - r) / 2.0, h - 10.0, (t + h - b) / 2.0);
    let _ = writeln!(
        svg,
        "<rect x=\"{l}\" y=\"{t}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>",
        w - l - r,
        h - t - b
    );
    for (k, (name, color, pts)) in curves.iter().enumerate() {
        let d: Vec<String> = pts
            .iter()
            .map(|&(a, v)| format!("{:.1},{:.1}", x(a), y(v)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.8\" points=\"{}\"/>",
            d.join(" ")
        );
        let ly = t + 18.0 + 18.0 * k as f64;
        let _ = writeln!(svg, "<line x1=\"{}\" x2=\"{}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"3\"/><text x=\"{}\" y=\"{}\">{name}</text>", w - r - 250.0, w - r - 225.0, w - r - 218.0, ly + 4.0);
    }
    svg.push_str("</svg>\n");
    svg
}

//! Progress of the long runs (perplexity, the flat bench, the store bench): an indicatif bar
//! with rate and time left on a terminal; where standard error is a log (CI, a pipe), a plain
//! line every ten seconds instead, since a bar's redraws would fill the log.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// A run of `total` steps (`unit` names them: "tokens", "conversations").
    pub fn new(label: impl Into<String>, total: u64, unit: &str) -> Self {
        let label = label.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(total);
            let style = ProgressStyle::with_template(&format!(
                "{{msg}} [{{bar:32}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, {{eta}} left)"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            b.set_style(style);
            b.set_message(label.clone());
            b.enable_steady_tick(Duration::from_millis(250));
            b
        });
        let now = Instant::now();
        Self {
            bar,
            label,
            total,
            done: 0,
            started: now,
            last_line: now,
        }
    }

    /// `done` steps of the total are finished.
    pub fn set(&mut self, done: u64) {
        self.done = done.min(self.total);
        match &self.bar {
            Some(b) => b.set_position(self.done),
            None if self.last_line.elapsed() >= Duration::from_secs(10)
                || self.done == self.total =>
            {
                self.last_line = Instant::now();
                let secs = self.started.elapsed().as_secs_f64().max(1e-9);
                let rate = self.done as f64 / secs;
                let left = (self.total - self.done) as f64 / rate.max(1e-9);
                eprintln!(
                    "{}: {}/{} ({:.1}%), {rate:.1}/s, {:.0} min left",
                    self.label,
                    self.done,
                    self.total,
                    100.0 * self.done as f64 / self.total.max(1) as f64,
                    left / 60.0
                );
            }
            None => {}
        }
    }

    pub fn inc(&mut self) {
        self.set(self.done + 1);
    }

    /// A line of its own (a result), above the bar on a terminal.
    pub fn println(&self, line: impl AsRef<str>) {
        match &self.bar {
            Some(b) => b.println(line.as_ref()),
            None => eprintln!("{}", line.as_ref()),
        }
    }

    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
        eprintln!(
            "{}: done in {:.0} s",
            self.label,
            self.started.elapsed().as_secs_f64()
        );
    }
}

//! Chats out and in: an export file in the data folder's `exports` (JSON, complete and
//! importable, or Markdown to read), deleting every export, and importing an export file's
//! text or a file the backend reads itself.

use crate::error::{ErrorCode, UiError, UiResult};
use crate::ChatService;

impl ChatService {
    /// Writes conversations (`None`: all) to a file in the data folder's `exports` and returns
    /// its path. `format`: `json` (complete, can be imported back) or `markdown`.
    pub async fn export_conversations(
        &self,
        ids: Option<&[i64]>,
        format: &str,
    ) -> UiResult<String> {
        let store = self.store();
        let (body, ext) = match format {
            "json" => (
                serde_json::to_string_pretty(&store.export(ids).await?)
                    .map_err(|e| UiError::new(ErrorCode::ExportFailed, e.to_string()))?,
                "json",
            ),
            "markdown" => (store.export_markdown(ids).await?, "md"),
            other => {
                return Err(UiError::new(
                    ErrorCode::BadFormat,
                    format!("Export as {other:?} is not offered; choose JSON or Markdown."),
                ))
            }
        };
        let dir = self.data_dir().join("exports");
        let stamp = stamp();
        // Never over an earlier export: two in one second get -2, -3...
        let write = |path: &std::path::Path| -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)?;
            f.write_all(body.as_bytes())
        };
        let mut path = dir.join(format!("sinkchat-{stamp}.{ext}"));
        let written = std::fs::create_dir_all(&dir).and_then(|_| {
            let mut n = 1;
            loop {
                match write(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => {
                        n += 1;
                        path = dir.join(format!("sinkchat-{stamp}-{n}.{ext}"));
                    }
                    other => return other,
                }
            }
        });
        written.map_err(|e| {
            UiError::new(
                ErrorCode::ExportFailed,
                format!("The export could not be written to {}: {e}", path.display()),
            )
        })?;
        Ok(path.display().to_string())
    }

    /// Removes every file SinkChat exported (the `exports` folder of the data folder): an
    /// export is a plain copy of chats, and deleting a chat does not reach copies. Returns how
    /// many files went. Files written elsewhere by the person are not touched.
    pub async fn delete_exports(&self) -> UiResult<usize> {
        let dir = self.data_dir().join("exports");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => {
                return Err(UiError::new(
                    ErrorCode::DeleteFailed,
                    format!(
                        "The exports folder {} could not be read: {e}",
                        dir.display()
                    ),
                ))
            }
        };
        let mut n = 0;
        for e in entries.flatten() {
            let path = e.path();
            if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                std::fs::remove_file(&path).map_err(|err| {
                    UiError::new(
                        ErrorCode::DeleteFailed,
                        format!("{} could not be deleted: {err}", path.display()),
                    )
                })?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Adds the conversations of an export file's text.
    pub async fn import_conversations(
        &self,
        text: &str,
    ) -> UiResult<sinkchat_store::ImportSummary> {
        Ok(self.store().import(text).await?)
    }

    /// Adds the conversations of an export file, read here rather than sent whole through
    /// the window's IPC. A folder, a pipe or a file over the size limit is refused before
    /// anything is read.
    pub async fn import_conversations_file(
        &self,
        path: &str,
    ) -> UiResult<sinkchat_store::ImportSummary> {
        let path = std::path::PathBuf::from(path);
        let refuse = |why: String| {
            UiError::new(
                ErrorCode::InvalidImport,
                format!("This file can't be imported: {why}"),
            )
        };
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| refuse(format!("{} could not be read ({e})", path.display())))?;
        if !meta.is_file() {
            return Err(refuse(format!("{} is not a file", path.display())));
        }
        let max = sinkchat_store::MAX_IMPORT_BYTES;
        if meta.len() > max {
            return Err(refuse(format!(
                "it is {} MB; the largest export SinkChat imports at once is {} MB. Split it \
                 and import the parts",
                meta.len() >> 20,
                max >> 20
            )));
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| refuse(format!("{} could not be read ({e})", path.display())))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| refuse("it is not a SinkChat export (not UTF-8 text)".into()))?;
        self.import_conversations(&text).await
    }
}

/// `YYYYMMDD-HHMMSS` in local time where the platform gives it safely (a multi-threaded Unix
/// process gets UTC: `time` refuses to read the offset there), for export file
/// names. (The `time` crate, where the first version had a home-made calendar.)
fn stamp() -> String {
    let now = time::OffsetDateTime::now_local().unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    now.format(&fmt)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

//! The app's commands as one table ([`for_each_command!`], in `command_table.rs`), and what
//! the doors generated from it share: which door offers a command, how a streaming command's
//! last event is known, and a description of every command (name, arguments and their types,
//! what it returns) for the TypeScript bindings and the tests that drive each door.

include!("command_table.rs");

use crate::events::ReplyEvent;
use crate::models::DownloadEvent;

/// Every type the commands take and return (and the constants they use), by one path: a door
/// glob-imports it where it expands the table.
pub mod types {
    pub use crate::events::{MemoryView, ReplyEvent, ReplyOptions, Sent};
    pub use crate::meaning::MeaningState;
    pub use crate::models::{DownloadEvent, ModelsOverview};
    pub use crate::remote::{ServerCheck, ServerChoice};
    pub use crate::{ServerState, Settings, Status, UNDO_WINDOW};
    pub use sinkchat_engine::engine::SnapshotUsage;
    pub use sinkchat_engine::ModelSummary;
    pub use sinkchat_hub::InstalledModel;
    pub use sinkchat_store::{Conversation, ImportSummary, Message, SearchHit};
}

/// Which doors offer a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// The window and the browser.
    Both,
    /// The window alone (it takes a path from the system's file picker).
    Window,
    /// The browser alone (the page uploads the text itself).
    Browser,
}

impl Door {
    pub fn window(self) -> bool {
        self != Door::Browser
    }
    pub fn browser(self) -> bool {
        self != Door::Window
    }
}

/// An event a streaming command sends: the door closes the stream after the last one.
pub trait StreamEvent {
    fn is_last(&self) -> bool;
}

impl StreamEvent for ReplyEvent {
    fn is_last(&self) -> bool {
        self.ends_reply()
    }
}

impl StreamEvent for DownloadEvent {
    fn is_last(&self) -> bool {
        !matches!(self, DownloadEvent::Progress { .. })
    }
}

/// One command as the table gives it. Types are as written in the table (`$crate` stands for
/// this crate).
#[derive(Debug, Clone, Copy)]
pub struct CommandInfo {
    pub name: &'static str,
    pub door: Door,
    /// `(argument, type)`, in order, by their Rust names.
    pub args: &'static [(&'static str, &'static str)],
    pub returns: &'static str,
    /// The type of a streaming command's events.
    pub events: Option<&'static str>,
}

#[doc(hidden)]
#[macro_export]
macro_rules! __door {
    (both) => {
        $crate::commands::Door::Both
    };
    (window) => {
        $crate::commands::Door::Window
    };
    (browser) => {
        $crate::commands::Door::Browser
    };
}

macro_rules! __first {
    ($x:expr $(, $rest:expr)*) => {
        $x
    };
}

macro_rules! describe {
    ($( $door:ident $name:ident |$svc:ident $(, $arg:ident : $ty:ty)*| -> $ret:ty
        $(, $cb:ident : $ev:ty)? $body:block )*) => {
        /// Every command of the table, in its order.
        pub const COMMANDS: &[CommandInfo] = &[$(
            CommandInfo {
                name: stringify!($name),
                door: __door!($door),
                args: &[$((stringify!($arg), stringify!($ty))),*],
                returns: stringify!($ret),
                events: __first!($(Some(stringify!($ev)),)? None),
            }
        ),*];
    };
}

#[allow(unused_imports)]
use types::*;
for_each_command!(describe);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_streaming_commands_name_their_events() {
        let mut names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a command appears twice");
        let send = COMMANDS.iter().find(|c| c.name == "send_message").unwrap();
        assert!(send.events.unwrap().ends_with("ReplyEvent"), "{send:?}");
        assert_eq!(send.args[0], ("conversation_id", "i64"));
        let status = COMMANDS.iter().find(|c| c.name == "app_status").unwrap();
        assert!(status.events.is_none() && status.args.is_empty());
        assert!(!COMMANDS
            .iter()
            .find(|c| c.name == "import_conversations_file")
            .unwrap()
            .door
            .browser());
    }
}

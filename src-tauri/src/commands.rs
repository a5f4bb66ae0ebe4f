//! The window's Tauri commands, generated from the command table
//! ([`sinkchat_chat::for_each_command!`]): each a thin adapter from the window to the
//! conversation service (`sinkchat-chat`), where every rule of a chat lives and is tested. The
//! browser door (`sinkchat-server`) is generated from the same table, and so is the ACL list
//! (`build.rs`) and the TypeScript (`tests/bindings.rs`). Generic over nothing but the managed
//! service, so `tauri::test` can drive them without a window.

#[allow(unused_imports)]
use sinkchat_chat::commands::types::*;
use sinkchat_chat::{ChatService, UiResult};
use tauri::ipc::Channel;
use tauri::State;

/// A Tauri command's body, with a channel turned into the service's event callback.
macro_rules! window_body {
    ($svc:ident, $state:ident, $body:block) => {{
        let $svc: &ChatService = &$state;
        $body
    }};
    ($svc:ident, $state:ident, $body:block, $cb:ident) => {{
        let $svc: &ChatService = &$state;
        let channel = $cb;
        let $cb = move |e| {
            let _ = channel.send(e);
        };
        $body
    }};
}

/// One `#[tauri::command]` per entry the window offers (`both` and `window`), and
/// [`handler`], the invoke handler that registers them.
macro_rules! window_door {
    ($( $door:ident $name:ident |$svc:ident $(, $arg:ident : $ty:ty)*| -> $ret:ty
        $(, $cb:ident : $ev:ty)? $body:block )*) => {
        $( window_door!(@one $door $name |$svc $(, $arg : $ty)*| -> $ret $(, $cb : $ev)? $body); )*

        /// The invoke handler: every command the window offers.
        pub fn handler<R: tauri::Runtime>() -> impl Fn(tauri::ipc::Invoke<R>) -> bool + Send + Sync + 'static {
            window_door!(@handler [] $($door $name)*)
        }
    };
    (@one browser $($rest:tt)*) => {};
    (@one $door:ident $name:ident |$svc:ident $(, $arg:ident : $ty:ty)*| -> $ret:ty
        $(, $cb:ident : $ev:ty)? $body:block) => {
        #[tauri::command]
        pub async fn $name(
            state: State<'_, ChatService>,
            $($arg: $ty,)*
            $($cb: Channel<$ev>,)?
        ) -> UiResult<$ret> {
            window_body!($svc, state, $body $(, $cb)?)
        }
    };
    (@handler [$($done:ident)*]) => { tauri::generate_handler![$($done),*] };
    (@handler [$($done:ident)*] browser $name:ident $($rest:tt)*) => {
        window_door!(@handler [$($done)*] $($rest)*)
    };
    (@handler [$($done:ident)*] $door:ident $name:ident $($rest:tt)*) => {
        window_door!(@handler [$($done)* $name] $($rest)*)
    };
}

sinkchat_chat::for_each_command!(window_door);

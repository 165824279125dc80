//! `stats conns`: one block per listener and open memcached connection, in
//! memcached's format (`<id>:addr`, `<id>:listen_addr`, `<id>:state`,
//! `<id>:secs_since_last_cmd`; addresses are `tcp:<ip:port>` or
//! `unix:<path>`). The id is the socket's file descriptor, as in memcached.
//! A connection running commands shows `conn_parse_cmd`, an idle one
//! `conn_waiting`.

use std::borrow::Cow;

use super::{Rows, StatValue};
use crate::state::AppState;

pub fn conns(state: &AppState) -> Rows {
    let now = state.kv.now();
    let mut out = Rows::new();
    for c in state.connections() {
        let row = |f: &str, v: StatValue| (Cow::Owned(format!("{}:{f}", c.id)), v);
        out.push(row("addr", StatValue::Text(c.addr.to_string())));
        if let Some(listen) = &c.listen {
            out.push(row("listen_addr", StatValue::Text(listen.to_string())));
        }
        out.push(row("state", StatValue::Text(c.state().into())));
        out.push(row(
            "secs_since_last_cmd",
            StatValue::Int(now.saturating_sub(c.last_command())),
        ));
    }
    out
}

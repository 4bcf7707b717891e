//! The resharding's sentinel (manta-reshard phase 9, research
//! resharding.md §3.8): after the moving vnodes are read-only, a row
//! written on the source shard's primary and read back on each new peer
//! before it is detached. A peer that shows the latest sentinel holds
//! every write committed before it, so detaching it loses none.
//!
//! One row per operation in its own table (`tritonctl_reshard_sentinel`,
//! not a Moray bucket: nothing routes to it). Each write gives the row a
//! fresh nonce, so a peer is judged against the latest write, not an
//! earlier one from before a resumed step.

use reconcilers::error::WorldError;

const TABLE: &str = "tritonctl_reshard_sentinel";

fn pg(e: tokio_postgres::Error, what: &str) -> WorldError {
    WorldError::Transport(format!("{what}: {e}"))
}

async fn connect(conninfo: &str, what: &str) -> Result<tokio_postgres::Client, WorldError> {
    let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .map_err(|e| pg(e, what))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "sentinel connection closed");
        }
    });
    Ok(client)
}

/// Write (or rewrite with a new nonce) the operation's sentinel on the
/// primary; returns the nonce.
pub async fn write(primary: &str, op_id: &str) -> Result<String, WorldError> {
    let c = connect(primary, "connecting to the source primary for the sentinel").await?;
    c.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} (op text PRIMARY KEY, nonce text NOT NULL, \
         written timestamptz NOT NULL DEFAULT now())"
    ))
    .await
    .map_err(|e| pg(e, "creating the sentinel table"))?;
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    );
    c.execute(
        &format!(
            "INSERT INTO {TABLE} (op, nonce) VALUES ($1, $2) \
             ON CONFLICT (op) DO UPDATE SET nonce = EXCLUDED.nonce, written = now()"
        ),
        &[&op_id, &nonce],
    )
    .await
    .map_err(|e| pg(e, "writing the sentinel"))?;
    Ok(nonce)
}

/// The operation's sentinel nonce as a server holds it (None: no row, or
/// no table yet).
pub async fn read(conninfo: &str, op_id: &str) -> Result<Option<String>, WorldError> {
    let c = connect(conninfo, "connecting to read the sentinel").await?;
    let exists = c
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&TABLE])
        .await
        .map_err(|e| pg(e, "looking for the sentinel table"))?
        .get::<_, bool>(0);
    if !exists {
        return Ok(None);
    }
    let row = c
        .query_opt(
            &format!("SELECT nonce FROM {TABLE} WHERE op = $1"),
            &[&op_id],
        )
        .await
        .map_err(|e| pg(e, "reading the sentinel"))?;
    Ok(row.map(|r| r.get(0)))
}

//! `audit query | tail | export | verify`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use agentgate_model::audit::{AuditHead, AuditRecord, ChainVerifier, Decision};
use agentgate_model::limits::AUDIT_QUERY_RECORDS_MAX;
use agentgate_model::query::{AuditFilter, Query, QueryResult};
use agentgate_runtime::clock::millis;
use serde::Serialize;
use serde_json::json;

use super::Ctx;
use crate::cli::{AuditCmd, AuditFilters, DecisionArg, ExportFormat};
use crate::client::unexpected;
use crate::error::{CliError, Exit, Result};
use crate::out::{Progress, opt, table, time};

const PAGE: u64 = AUDIT_QUERY_RECORDS_MAX as u64;

/// A time given as RFC 3339 or as a duration before `now_ms`, in ms since the epoch.
pub fn parse_when(s: &str, now_ms: u64) -> std::result::Result<u64, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return t
            .duration_since(UNIX_EPOCH)
            .map(millis)
            .map_err(|_| format!("`{s}` is before 1970"));
    }
    humantime::parse_duration(s)
        .map(|d| now_ms.saturating_sub(millis(d)))
        .map_err(|_| {
            format!(
                "`{s}` is neither an RFC 3339 time (2026-11-21T10:00:00Z) nor a duration ago (15m)"
            )
        })
}

fn filter_of(ctx: &Ctx, f: &AuditFilters) -> Result<AuditFilter> {
    let now = ctx.now_ms();
    let when = |s: &Option<String>| {
        s.as_deref()
            .map(|s| parse_when(s, now).map_err(CliError::invalid))
            .transpose()
    };
    Ok(AuditFilter {
        tenant: f.tenant.clone(),
        agent: f.agent.clone(),
        session: f.session.clone(),
        tool: f.tool.clone(),
        decision: f.decision.map(|d| match d {
            DecisionArg::Allow => Decision::Allow,
            DecisionArg::Deny => Decision::Deny,
            DecisionArg::RequireApproval => Decision::RequireApproval,
        }),
        since_ms: when(&f.since)?,
        until_ms: when(&f.until)?,
        after_seq: None,
        limit: None,
    })
}

async fn page(ctx: &mut Ctx, filter: &AuditFilter) -> Result<(Vec<AuditRecord>, Option<u64>)> {
    match ctx
        .client
        .query(&Query::Audit {
            filter: filter.clone(),
        })
        .await?
        .1
    {
        QueryResult::Audit {
            records,
            next_after_seq,
        } => Ok((records, next_after_seq)),
        other => Err(unexpected(&other)),
    }
}

async fn head(ctx: &mut Ctx) -> Result<AuditHead> {
    match ctx.client.query(&Query::AuditHead).await?.1 {
        QueryResult::AuditHead(h) => Ok(h),
        other => Err(unexpected(&other)),
    }
}

fn row(r: &AuditRecord) -> [String; 8] {
    let e = &r.entry;
    [
        r.seq.to_string(),
        time(e.time_ms),
        format!("{}/{}", e.tenant, e.agent),
        opt(e.session.as_deref()),
        format!("{} {}", e.method, e.tool.as_deref().unwrap_or(""))
            .trim()
            .to_string(),
        e.decision.as_str().to_string(),
        opt(e.policy_version.as_deref()),
        e.reason.clone(),
    ]
}

const HEADER: [&str; 8] = [
    "SEQ",
    "TIME",
    "TENANT/AGENT",
    "SESSION",
    "CALL",
    "DECISION",
    "POLICY",
    "REASON",
];

fn line(r: &AuditRecord) -> String {
    row(r).join("  ")
}

pub async fn run(ctx: &mut Ctx, cmd: AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Query {
            filters,
            limit,
            after_seq,
        } => {
            let mut f = filter_of(ctx, &filters)?;
            f.after_seq = after_seq;
            f.limit = Some(limit.clamp(1, PAGE));
            let (records, next) = page(ctx, &f).await?;
            ctx.out
                .emit(&json!({"records": records, "next_after_seq": next}), || {
                    let mut s = if records.is_empty() {
                        "(no matching records)".to_string()
                    } else {
                        table(HEADER, records.iter().map(row).collect())
                    };
                    if let Some(n) = next {
                        s.push_str(&format!("\n(more may match: add --after-seq {n})"));
                    }
                    s
                });
            Ok(())
        }
        AuditCmd::Tail {
            filters,
            lines,
            follow,
            interval_ms,
        } => tail(ctx, &filters, lines, follow, interval_ms).await,
        AuditCmd::Export {
            filters,
            format,
            output,
        } => export(ctx, &filters, format, output.as_deref()).await,
        AuditCmd::Verify { file } => match file {
            Some(f) => verify_file(ctx, &f),
            None => verify_cluster(ctx).await,
        },
    }
}

/// Every matching record after `cursor`, page by page; returns the new cursor (the newest
/// sequence number known to be covered).
async fn drain(
    ctx: &mut Ctx,
    filter: &AuditFilter,
    cursor: u64,
    mut each: impl FnMut(&AuditRecord) -> bool,
) -> Result<u64> {
    // Everything up to the head read first is covered once the pages run out.
    let covered = head(ctx).await?.next_seq.saturating_sub(1);
    let mut f = filter.clone();
    f.after_seq = Some(cursor);
    f.limit = Some(PAGE);
    let mut newest = cursor.max(covered);
    loop {
        let (records, next) = page(ctx, &f).await?;
        for r in &records {
            newest = newest.max(r.seq);
            if !each(r) {
                return Ok(newest);
            }
        }
        match next {
            Some(n) => f.after_seq = Some(n),
            None => return Ok(newest),
        }
    }
}

async fn tail(
    ctx: &mut Ctx,
    filters: &AuditFilters,
    lines: u64,
    follow: bool,
    interval_ms: u64,
) -> Result<()> {
    let filter = filter_of(ctx, filters)?;
    let start = head(ctx)
        .await?
        .next_seq
        .saturating_sub(1)
        .saturating_sub(lines);
    let out = ctx.out;
    let open = std::cell::Cell::new(true);
    let mut print = |r: &AuditRecord| {
        open.set(out.line(&json!(r), || line(r)));
        open.get()
    };
    let mut cursor = drain(ctx, &filter, start, &mut print).await?;
    if !follow {
        return Ok(());
    }
    let interval = Duration::from_millis(interval_ms.max(50));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
        cursor = drain(ctx, &filter, cursor, &mut print).await?;
        if !open.get() {
            return Ok(());
        }
    }
}

/// One CSV row.
#[derive(Serialize)]
struct CsvRow<'a> {
    seq: u64,
    time: String,
    committed: String,
    edge_id: &'a str,
    edge_seq: u64,
    tenant: &'a str,
    agent: &'a str,
    session: Option<&'a str>,
    method: &'a str,
    tool: Option<&'a str>,
    args_digest: Option<&'a str>,
    decision: &'a str,
    reason: &'a str,
    policy_version: Option<&'a str>,
    policy_ids: String,
    shadow_decision: Option<&'a str>,
    latency_us: u64,
    upstream_latency_us: Option<u64>,
    upstream_status: Option<u16>,
    trace_id: Option<&'a str>,
    prev_hash: &'a str,
    hash: &'a str,
}

fn csv_row(r: &AuditRecord) -> CsvRow<'_> {
    let e = &r.entry;
    CsvRow {
        seq: r.seq,
        time: time(e.time_ms),
        committed: time(r.committed_ms),
        edge_id: &r.edge_id,
        edge_seq: e.edge_seq,
        tenant: &e.tenant,
        agent: &e.agent,
        session: e.session.as_deref(),
        method: &e.method,
        tool: e.tool.as_deref(),
        args_digest: e.args_digest.as_deref(),
        decision: e.decision.as_str(),
        reason: &e.reason,
        policy_version: e.policy_version.as_deref(),
        policy_ids: e.policy_ids.join(";"),
        shadow_decision: e.shadow_decision.map(Decision::as_str),
        latency_us: e.latency_us,
        upstream_latency_us: e.upstream_latency_us,
        upstream_status: e.upstream_status,
        trace_id: e.trace_id.as_deref(),
        prev_hash: &r.prev_hash,
        hash: &r.hash,
    }
}

enum Sink {
    Csv(Box<csv::Writer<std::io::BufWriter<Box<dyn Write>>>>),
    Jsonl(std::io::BufWriter<Box<dyn Write>>),
}

async fn export(
    ctx: &mut Ctx,
    filters: &AuditFilters,
    format: ExportFormat,
    output: Option<&Path>,
) -> Result<()> {
    let filter = filter_of(ctx, filters)?;
    let total = head(ctx).await?.next_seq.saturating_sub(1);
    let sink: Box<dyn Write> = match output {
        Some(p) => Box::new(
            std::fs::File::create(p)
                .map_err(|e| CliError::io(&format!("cannot create {}", p.display()), &e))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let sink = std::io::BufWriter::new(sink);
    let mut w = match format {
        ExportFormat::Csv => Sink::Csv(Box::new(csv::Writer::from_writer(sink))),
        ExportFormat::Jsonl => Sink::Jsonl(sink),
    };
    let mut count = 0u64;
    let mut failure: Option<CliError> = None;
    let mut progress = Progress::new();
    let mut write = |r: &AuditRecord| {
        let res = match &mut w {
            Sink::Csv(c) => c.serialize(csv_row(r)).map_err(|e| e.to_string()),
            Sink::Jsonl(j) => serde_json::to_writer(&mut *j, r)
                .map_err(|e| e.to_string())
                .and_then(|()| j.write_all(b"\n").map_err(|e| e.to_string())),
        };
        match res {
            Ok(()) => {
                count += 1;
                if count.is_multiple_of(PAGE) {
                    progress.update(&format!("exported {count} records (log holds {total})"));
                }
                true
            }
            Err(e) => {
                failure = Some(CliError::new(
                    Exit::Error,
                    "io",
                    format!("export failed: {e}"),
                ));
                false
            }
        }
    };
    let last = drain(ctx, &filter, 0, &mut write).await?;
    if let Some(e) = failure {
        return Err(e);
    }
    match &mut w {
        Sink::Csv(c) => c.flush(),
        Sink::Jsonl(j) => j.flush(),
    }
    .map_err(|e| CliError::io("export failed", &e))?;
    progress.update(&format!("exported {count} records, up to seq {last}"));
    progress.finish();
    if output.is_some() {
        ctx.out.emit(
            &json!({"exported": count, "last_seq": last, "format": format!("{format:?}").to_lowercase(), "file": output}),
            || format!("exported {count} records to {}", output.map(|p| p.display().to_string()).unwrap_or_default()),
        );
    }
    Ok(())
}

fn broken(e: &agentgate_model::audit::ChainError, verified: u64, line: Option<usize>) -> CliError {
    let at = line.map_or(String::new(), |l| format!(" (line {l})"));
    CliError::new(
        Exit::Denied,
        "chain_broken",
        format!("audit chain does NOT verify: {e}{at}; {verified} records before it verified"),
    )
    .hint(format!(
        "record {} and everything after it cannot be trusted; compare it with an earlier export",
        e.seq()
    ))
}

async fn verify_cluster(ctx: &mut Ctx) -> Result<()> {
    // Verify up to the head as it is now; records appended meanwhile are left for next time.
    let h = head(ctx).await?;
    let last = h.next_seq.saturating_sub(1);
    let mut v = ChainVerifier::new(true);
    let mut err = None;
    let mut tip = None;
    let mut progress = Progress::new();
    let mut f = AuditFilter {
        after_seq: Some(0),
        limit: Some(PAGE),
        ..AuditFilter::default()
    };
    'pages: while f.after_seq.unwrap_or(0) < last {
        let (records, next) = page(ctx, &f).await?;
        for r in records.iter().filter(|r| r.seq <= last) {
            if let Err(e) = v.push(r) {
                err = Some(e);
                break 'pages;
            }
            tip = Some(r.hash.clone());
        }
        progress.update(&format!("verified {} of {last} records", v.verified));
        match next {
            Some(n) => f.after_seq = Some(n),
            None => break,
        }
    }
    progress.finish();
    if let Some(e) = err {
        return Err(broken(&e, v.verified, None));
    }
    if v.verified != last || (last > 0 && tip.as_deref() != Some(h.last_hash.as_str())) {
        return Err(CliError::new(
            Exit::Denied,
            "chain_broken",
            format!(
                "audit chain does NOT verify: the head says {last} records ending in {}, the log holds {} verified records ending in {}",
                h.last_hash,
                v.verified,
                opt(tip.as_deref())
            ),
        )
        .hint("records are missing from the log's tail; compare with an earlier export"));
    }
    ctx.out.emit(
        &json!({"verified": true, "records": v.verified, "last_seq": last, "last_hash": h.last_hash}),
        || {
            format!(
                "audit chain verified: {} records (seq 1..{last}), head hash {}",
                v.verified, h.last_hash
            )
        },
    );
    Ok(())
}

fn verify_file(ctx: &mut Ctx, path: &Path) -> Result<()> {
    let f = std::fs::File::open(path)
        .map_err(|e| CliError::io(&format!("cannot open {}", path.display()), &e))?;
    let mut v = ChainVerifier::new(true);
    let mut tip = None;
    let mut progress = Progress::new();
    for (i, l) in BufReader::new(f).lines().enumerate() {
        let n = i + 1;
        let l = l.map_err(|e| CliError::io(&format!("cannot read {}", path.display()), &e))?;
        if l.trim().is_empty() {
            continue;
        }
        let r: AuditRecord = serde_json::from_str(&l).map_err(|e| {
            CliError::new(
                Exit::Denied,
                "chain_broken",
                format!("line {n} of {} is not an audit record: {e}", path.display()),
            )
            .hint("verify a file made by `agentgate-admin audit export --format jsonl` (without filters)")
        })?;
        if let Err(e) = v.push(&r) {
            return Err(broken(&e, v.verified, Some(n)));
        }
        tip = Some(r.hash);
        if v.verified.is_multiple_of(PAGE) {
            progress.update(&format!("verified {} records", v.verified));
        }
    }
    progress.finish();
    ctx.out.emit(
        &json!({"verified": true, "records": v.verified, "last_hash": tip}),
        || {
            format!(
                "{}: audit chain verified: {} records from the genesis, last hash {}",
                path.display(),
                v.verified,
                opt(tip.as_deref())
            )
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_absolute_or_ago() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_when("15m", now), Ok(now - 900_000));
        assert_eq!(
            parse_when("2023-11-14T22:13:20Z", now),
            Ok(1_700_000_000_000)
        );
        assert!(parse_when("yesterday", now).is_err());
    }
}

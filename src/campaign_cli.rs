//! The `mta stats` and `mta campaign ...` commands: figures per campaign, tenant, provider
//! or source, and pausing and resuming campaigns and tenants, through the admin endpoint.
//!
//! What it does: `stats` prints the rows of one kind with their counters and rates (or the
//! JSON); `campaign list|show` the campaigns (or tenants) with their pause, threshold and
//! counts; `campaign pause|resume NAME` changes one.
//!
//! What it does not do: no counting (the MTA keeps the counters), no reading of logs.
//!
//! Invariants: a non-2xx answer is an error (exit status 1) with the server's message.

use clap::Subcommand;
use serde_json::Value;

use crate::admin_cli::{self, ApiArgs, encode};
use mta::config::Config;

/// `mta campaign ...`.
#[derive(Subcommand)]
pub enum CampaignCmd {
    /// Every campaign (or tenant, with --tenant) with counts or a pause.
    List {
        /// Tenants instead of campaigns.
        #[arg(long)]
        tenant: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// One campaign (or tenant): its pause, threshold, counts since start and since resume.
    Show {
        /// Its name.
        name: String,
        /// A tenant, not a campaign.
        #[arg(long)]
        tenant: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop delivering a campaign's (or tenant's) mail: it stays queued until resumed.
    Pause {
        /// Its name.
        name: String,
        /// A tenant, not a campaign.
        #[arg(long)]
        tenant: bool,
        /// Why (kept with the pause).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Deliver a paused campaign's (or tenant's) mail again; its threshold judges what is sent
    /// from now on.
    Resume {
        /// Its name.
        name: String,
        /// A tenant, not a campaign.
        #[arg(long)]
        tenant: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}

impl CampaignCmd {
    /// The configuration file named.
    pub fn config(&self) -> Option<std::path::PathBuf> {
        match self {
            CampaignCmd::List { api, .. }
            | CampaignCmd::Show { api, .. }
            | CampaignCmd::Pause { api, .. }
            | CampaignCmd::Resume { api, .. } => api.config.clone(),
        }
    }
}

fn kind(tenant: bool) -> &'static str {
    match tenant {
        true => "tenant",
        false => "campaign",
    }
}

/// A rate as a percentage, `-` when there is none.
fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or("-".to_owned(), |r| format!("{:.2}%", r * 100.0))
}

fn n(v: &Value) -> String {
    v.as_u64().map_or("-".to_owned(), |n| n.to_string())
}

/// `mta stats`.
pub fn stats(config: &Config, by: &str, since: Option<&str>, api: &ApiArgs) -> anyhow::Result<()> {
    let mut path = format!("/stats?by={}", encode(by));
    if let Some(s) = since {
        path.push_str(&format!("&since={}", encode(s)));
    }
    let body = admin_cli::call(config, api, false, &path)?;
    if api.json {
        println!("{body}");
        return Ok(());
    }
    let v = admin_cli::json(&body)?;
    println!(
        "{:<24} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10} {:>10} {:>12} {:>9} {:>8} {:>10}",
        by,
        "accepted",
        "delivered",
        "deferred",
        "bounced",
        "expired",
        "complained",
        "suppressed",
        "no_one_click",
        "delivery",
        "bounce",
        "complaint"
    );
    for r in v["rows"].as_array().into_iter().flatten() {
        let mut name = r["name"].as_str().unwrap_or("").to_owned();
        if r["paused"] == true {
            name.push_str(" (paused)");
        }
        println!(
            "{:<24} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10} {:>10} {:>12} {:>9} {:>8} {:>10}",
            name,
            n(&r["accepted"]),
            n(&r["delivered"]),
            n(&r["deferred"]),
            n(&r["bounced"]),
            n(&r["expired"]),
            n(&r["complained"]),
            n(&r["suppressed"]),
            n(&r["no_one_click"]),
            pct(&r["delivery_rate"]),
            pct(&r["bounce_rate"]),
            pct(&r["complaint_rate"]),
        );
    }
    Ok(())
}

/// Runs a `mta campaign` command.
pub fn campaign(config: &Config, cmd: CampaignCmd) -> anyhow::Result<()> {
    match cmd {
        CampaignCmd::List { tenant, api } => {
            let body = admin_cli::call(
                config,
                &api,
                false,
                &format!("/campaigns?kind={}", kind(tenant)),
            )?;
            if api.json {
                println!("{body}");
                return Ok(());
            }
            let v = admin_cli::json(&body)?;
            println!(
                "{:<24} {:<8} {:>9} {:>9} {:>9} {:>8}  why",
                kind(tenant),
                "state",
                "accepted",
                "delivered",
                "bounced",
                "bounce"
            );
            for i in v["items"].as_array().into_iter().flatten() {
                let (state, why) = match i["paused"].as_object() {
                    Some(p) => ("paused", p["reason"].as_str().unwrap_or("").to_owned()),
                    None => ("active", String::new()),
                };
                let t = &i["total"];
                println!(
                    "{:<24} {:<8} {:>9} {:>9} {:>9} {:>8}  {why}",
                    i["name"].as_str().unwrap_or(""),
                    state,
                    n(&t["accepted"]),
                    n(&t["delivered"]),
                    n(&t["bounced"]),
                    pct(&t["bounce_rate"]),
                );
            }
            Ok(())
        }
        CampaignCmd::Show { name, tenant, api } => admin_cli::simple(
            config,
            &api,
            false,
            &format!("/campaigns/{}?kind={}", encode(&name), kind(tenant)),
        ),
        CampaignCmd::Pause {
            name,
            tenant,
            reason,
            api,
        } => {
            let mut path = format!("/campaigns/{}/pause?kind={}", encode(&name), kind(tenant));
            if let Some(r) = reason {
                path.push_str(&format!("&reason={}", encode(&r)));
            }
            admin_cli::simple(config, &api, true, &path)
        }
        CampaignCmd::Resume { name, tenant, api } => admin_cli::simple(
            config,
            &api,
            true,
            &format!("/campaigns/{}/resume?kind={}", encode(&name), kind(tenant)),
        ),
    }
}

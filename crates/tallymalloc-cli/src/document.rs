//! The stats document (`docs/stats-schema.json`) as the reports read it: the core's figures
//! (`tallymalloc::DomainStats` and the rest, which its JSON writer walks), keyed as a reader
//! meets them, by domain name.

use serde::Deserialize;
use std::collections::BTreeMap;
use tallymalloc::{DomainStats, HugeStats, ProcessStats, SizeClassStats};

#[derive(Deserialize, Debug, Clone)]
pub struct StatsDocument {
    pub version: u32,
    /// The process's command line (absent from documents older than it).
    #[serde(default)]
    pub command: String,
    pub domains: BTreeMap<String, DomainStats>,
    pub size_classes: Vec<SizeClassStats>,
    pub huge: HugeStats,
    pub process: ProcessStats,
    #[serde(default)]
    pub timeline: Vec<Sample>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct Sample {
    pub time_ms: u64,
    pub resident_bytes: u64,
    pub live_bytes: BTreeMap<String, u64>,
}

impl StatsDocument {
    /// Parses and checks a document against the schema; `Err` says what is wrong with it.
    pub fn parse(text: &str) -> Result<StatsDocument, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        crate::schema::check_stats(&value).map_err(|e| format!("not a stats report: {e}"))?;
        serde_json::from_value(value).map_err(|e| format!("not a stats report: {e}"))
    }

    /// Domains in the order a reader expects: the built-in three, then the named ones by name.
    pub fn domains_in_order(&self) -> Vec<(&str, &DomainStats)> {
        let builtin = ["raw", "mem", "obj"];
        let mut ordered: Vec<(&str, &DomainStats)> = builtin
            .iter()
            .filter_map(|name| self.domains.get_key_value(*name))
            .map(|(name, figures)| (name.as_str(), figures))
            .collect();
        ordered.extend(
            self.domains
                .iter()
                .filter(|(name, _)| !builtin.contains(&name.as_str()))
                .map(|(name, figures)| (name.as_str(), figures)),
        );
        ordered
    }

    /// The highest resident size among the samples and the end of the run.
    pub fn peak_resident_bytes(&self) -> u64 {
        let sampled = self.timeline.iter().map(|s| s.resident_bytes).max();
        sampled.unwrap_or(0).max(self.process.resident_bytes)
    }

    pub fn total_mismatches(&self) -> u64 {
        self.domains.values().map(|d| d.mismatches).sum()
    }
}

//! Checks a stats document against `docs/stats-schema.json`, so that `tallymalloc report`
//! turns away a file that is not a stats report with the first thing wrong in it, and tests
//! can hold every producer of the JSON to the schema.
//!
//! Only the subset of JSON Schema that file uses is understood: `type`, `const`, `required`,
//! `properties`, `additionalProperties`, `items`, `minimum`, and `$ref` to the root (`#`).

use serde_json::Value;

/// The schema, as shipped with this build.
pub fn stats_schema() -> Value {
    serde_json::from_str(include_str!("../../../docs/stats-schema.json"))
        .expect("docs/stats-schema.json is valid JSON")
}

/// `Err` names the first place where `document` breaks the stats schema.
pub fn check_stats(document: &Value) -> Result<(), String> {
    check(document, &stats_schema(), "$")
}

/// `Err` names the first place where `value` breaks `schema`.
pub fn check(value: &Value, schema: &Value, path: &str) -> Result<(), String> {
    check_within(value, schema, schema, path)
}

/// [`check`] of a part of `root`'s schema, which `$ref: "#"` refers back to.
fn check_within(value: &Value, schema: &Value, root: &Value, path: &str) -> Result<(), String> {
    let check = |value: &Value, schema: &Value, path: &str| check_within(value, schema, root, path);
    match schema.get("$ref").and_then(Value::as_str) {
        Some("#") => return check(value, root, path),
        Some(other) => {
            return Err(format!(
                "{path}: the schema's $ref {other:?} is not understood"
            ))
        }
        None => {}
    }
    if let Some(expected) = schema.get("const") {
        if value != expected {
            return Err(format!("{path}: expected {expected}, found {value}"));
        }
    }
    if let Some(kind) = schema.get("type").and_then(Value::as_str) {
        let matches = match kind {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "integer" => value.is_u64() || value.is_i64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "string" => value.is_string(),
            other => {
                return Err(format!(
                    "{path}: the schema's type {other:?} is not understood"
                ))
            }
        };
        if !matches {
            return Err(format!("{path}: expected {kind}, found {value}"));
        }
    }
    if let Some(minimum) = schema.get("minimum").and_then(Value::as_i64) {
        if value.as_i64().is_none_or(|v| v < minimum) {
            return Err(format!("{path}: {value} is below {minimum}"));
        }
    }
    if let Some(object) = value.as_object() {
        let required = schema.get("required").and_then(Value::as_array);
        for name in required.into_iter().flatten().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                return Err(format!("{path}: {name} is missing"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (name, member) in object {
            let member_path = format!("{path}.{name}");
            match (
                properties.and_then(|p| p.get(name)),
                schema.get("additionalProperties"),
            ) {
                (Some(member_schema), _) => check(member, member_schema, &member_path)?,
                (None, Some(Value::Bool(false))) => {
                    return Err(format!("{member_path}: not in the schema"))
                }
                (None, Some(extra @ Value::Object(_))) => check(member, extra, &member_path)?,
                (None, _) => {}
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (index, item) in array.iter().enumerate() {
            check(item, items, &format!("{path}[{index}]"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_breach_is_named() {
        let schema = json!({
            "type": "object",
            "required": ["version", "items"],
            "properties": {
                "version": {"const": 1},
                "items": {"type": "array", "items": {"type": "integer", "minimum": 0}}
            },
            "additionalProperties": false
        });
        assert_eq!(
            check(&json!({"version": 1, "items": [0, 3]}), &schema, "$"),
            Ok(())
        );
        let error = |value| check(&value, &schema, "$").unwrap_err();
        assert_eq!(error(json!({"version": 1})), "$: items is missing");
        assert_eq!(
            error(json!({"version": 2, "items": []})),
            "$.version: expected 1, found 2"
        );
        assert_eq!(
            error(json!({"version": 1, "items": [1, -1]})),
            "$.items[1]: -1 is below 0"
        );
        assert_eq!(
            error(json!({"version": 1, "items": ["a"]})),
            "$.items[0]: expected integer, found \"a\""
        );
        assert_eq!(
            error(json!({"version": 1, "items": [], "x": 0})),
            "$.x: not in the schema"
        );
    }

    /// The schema describes exactly the figures the core declares (`tallymalloc::StatsFigures`,
    /// whose names the JSON writer walks), in their order, each required and of its type: a
    /// figure added to the core without the schema, or to the schema alone, fails here.
    #[test]
    fn the_schema_lists_exactly_the_cores_figures() {
        use tallymalloc::{DomainStats, HugeStats, ProcessStats, SizeClassStats, StatsFigures};
        fn names_and_types<F: StatsFigures>() -> Vec<(String, &'static str)> {
            let counts = F::COUNT_NAMES
                .iter()
                .map(|name| (name.to_string(), "integer"));
            let flags = F::FLAG_NAMES
                .iter()
                .map(|name| (name.to_string(), "boolean"));
            counts.chain(flags).collect()
        }
        /// The required names in order, each with its property's type.
        fn described(object: &Value) -> Vec<(String, &str)> {
            let properties = object["properties"].as_object().unwrap();
            let required = object["required"].as_array().unwrap();
            assert_eq!(required.len(), properties.len(), "every figure is required");
            assert_eq!(object["additionalProperties"], Value::Bool(false));
            required
                .iter()
                .map(|name| {
                    let name = name.as_str().unwrap();
                    (name.to_string(), properties[name]["type"].as_str().unwrap())
                })
                .collect()
        }
        let schema = stats_schema();
        let parts = &schema["properties"];
        assert_eq!(
            described(&parts["domains"]["additionalProperties"]),
            names_and_types::<DomainStats>()
        );
        assert_eq!(
            described(&parts["size_classes"]["items"]),
            names_and_types::<SizeClassStats>()
        );
        assert_eq!(described(&parts["huge"]), names_and_types::<HugeStats>());
        assert_eq!(
            described(&parts["process"]),
            names_and_types::<ProcessStats>()
        );
    }

    /// The core's serde serialisation of a live snapshot (which its hand-made JSON writer
    /// matches, `stats/report.rs`) passes the checker.
    #[test]
    fn a_snapshot_of_the_core_passes() {
        let mut document = serde_json::to_value(tallymalloc::stats()).unwrap();
        document["timeline"] = json!([]);
        assert_eq!(check_stats(&document), Ok(()));
    }
}

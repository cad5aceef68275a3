//! Policy test cases: request → expected decision, in the format of `policies/cases/*.json`.
//!
//! A case file names a policy file, a `base` call (a [`CallFacts`] in JSON) and cases whose
//! `call` overrides fields of the base. `expect` and `policy_ids` are optional: a case without
//! them is only evaluated (`agentgate-admin policy test` prints its decision).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::decide::{CallFacts, CompiledPolicy, Outcome, Verdict};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct CaseFile {
    /// The policy file the cases are written for, relative to the case file's directory's
    /// parent (`policies/`).
    #[serde(default)]
    pub policies: Option<String>,
    #[serde(default)]
    pub base: Map<String, Value>,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub call: Map<String, Value>,
    #[serde(default)]
    pub expect: Option<Outcome>,
    /// Expected deciding policy ids, in any order.
    #[serde(default)]
    pub policy_ids: Option<Vec<String>>,
}

/// One case evaluated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseResult {
    pub name: String,
    /// The decision, or why the case's call could not be built.
    pub verdict: Result<Verdict, String>,
    pub expect: Option<Outcome>,
    pub expect_policy_ids: Option<Vec<String>>,
    /// False when the decision or the deciding policies differ from what the case expects.
    pub passed: bool,
}

impl Case {
    /// The case's call: the base with the case's fields laid over it.
    pub fn facts(&self, base: &Map<String, Value>) -> Result<CallFacts, String> {
        let mut call = base.clone();
        for (k, v) in &self.call {
            call.insert(k.clone(), v.clone());
        }
        serde_json::from_value(Value::Object(call))
            .map_err(|e| format!("case `{}`: the call is not valid: {e}", self.name))
    }
}

/// Decides every case of `file` with `policy`.
pub fn run(policy: &CompiledPolicy, file: &CaseFile) -> Vec<CaseResult> {
    file.cases
        .iter()
        .map(|case| {
            let verdict = case.facts(&file.base).map(|f| policy.decide(&f));
            let passed = match &verdict {
                Err(_) => false,
                Ok(v) => {
                    let mut got = v.policy_ids.clone();
                    got.sort();
                    let ids_ok = case.policy_ids.as_ref().is_none_or(|want| {
                        let mut want = want.clone();
                        want.sort();
                        want == got
                    });
                    case.expect.is_none_or(|e| e == v.outcome) && ids_ok
                }
            };
            CaseResult {
                name: case.name.clone(),
                verdict,
                expect: case.expect,
                expect_policy_ids: case.policy_ids.clone(),
                passed,
            }
        })
        .collect()
}

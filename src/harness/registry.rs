//! A registry of scenarios and known bugs: the built-in ones, plus any a
//! user adds for their own systems (`Registry::builtin().with_scenario(..)`)
//! without touching durasim.

use super::error::HarnessError;
use super::scenario::Scenario;
use super::KnownBug;

/// Scenarios and known bugs, by name.
#[derive(Clone, Default)]
pub struct Registry {
    scenarios: Vec<&'static dyn Scenario>,
    defaults: Vec<&'static str>,
    bugs: Vec<KnownBug>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Add a scenario (replacing one of the same name) that a bare `sweep`
    /// runs too.
    pub fn with_scenario(mut self, scenario: &'static dyn Scenario) -> Registry {
        self.scenarios.retain(|s| s.name() != scenario.name());
        self.defaults.retain(|&n| n != scenario.name());
        self.defaults.push(scenario.name());
        self.scenarios.push(scenario);
        self
    }

    /// Add a scenario that runs only when named.
    pub fn with_extra_scenario(mut self, scenario: &'static dyn Scenario) -> Registry {
        self.scenarios.retain(|s| s.name() != scenario.name());
        self.defaults.retain(|&n| n != scenario.name());
        self.scenarios.push(scenario);
        self
    }

    /// Add a known bug of one of the scenarios.
    pub fn with_bug(mut self, bug: KnownBug) -> Registry {
        self.bugs
            .retain(|b| !(b.name == bug.name && b.scenario == bug.scenario));
        self.bugs.push(bug);
        self
    }

    /// Every scenario, in registration order.
    pub fn all(&self) -> &[&'static dyn Scenario] {
        &self.scenarios
    }

    /// The scenarios a bare `sweep` runs.
    pub fn defaults(&self) -> Vec<&'static dyn Scenario> {
        self.scenarios
            .iter()
            .copied()
            .filter(|s| self.defaults.contains(&s.name()))
            .collect()
    }

    /// The known-bug catalogue.
    pub fn bugs(&self) -> &[KnownBug] {
        &self.bugs
    }

    /// Look a scenario up by name.
    pub fn find(&self, name: &str) -> Result<&'static dyn Scenario, HarnessError> {
        self.scenarios
            .iter()
            .copied()
            .find(|s| s.name() == name)
            .ok_or_else(|| HarnessError::UnknownScenario {
                name: name.to_string(),
                known: self.names(),
            })
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.scenarios.iter().map(|s| s.name()).collect();
        names.join(", ")
    }

    /// Check that `bug` exists for `scenario`.
    pub fn check_bug(&self, scenario: &str, bug: &str) -> Result<&KnownBug, HarnessError> {
        self.bugs
            .iter()
            .find(|b| b.name == bug && b.scenario == scenario)
            .ok_or_else(|| HarnessError::UnknownBug {
                name: bug.to_string(),
                scenario: scenario.to_string(),
                known: self
                    .bugs
                    .iter()
                    .filter(|b| b.scenario == scenario)
                    .map(|b| b.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

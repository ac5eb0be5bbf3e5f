//! Pulls jobs from a hangar server and runs them with the engine.

//! Conventional commits to semantic versions, changelogs and tags.

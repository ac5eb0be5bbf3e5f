//! Secret scanning of working trees and git history.

//! The dpkg handler's dependency closure: mapping requested names to
//! installed packages and following `Depends`/`Pre-Depends` the way dpkg
//! checks them (alternatives, virtual packages, Multi-Arch qualifiers; see
//! the handler's module docs for how that differs from supermin). Parsing
//! the status file is `status.rs`'s; file lists are `mod.rs`'s.

use std::collections::VecDeque;

use super::status::{split_qualifier, Alternative, DepGroup, Installed, MultiArch};
use super::DpkgDb;
use crate::package::{Resolution, Unsatisfied};

impl DpkgDb {
    /// Maps one requested spelling (`name`, `name:arch`, `name:any`,
    /// `name:native`) to an installed package index.
    fn lookup_request(&self, spec: &str) -> Option<usize> {
        let (name, qualifier) = split_qualifier(spec);
        let candidates = self.by_name.get(name)?;
        let primary = self.primary_arch.as_str();
        let accept = |p: &Installed| match qualifier {
            // A plain name prefers the primary arch or `all`; a package that
            // is only installed for a foreign arch is still what was asked for.
            None | Some("any") => true,
            Some("native") => p.pkg.arch == primary || p.pkg.arch == "all",
            Some(arch) => p.pkg.arch == arch,
        };
        candidates
            .iter()
            .copied()
            .filter(|&i| accept(&self.installed[i]))
            .min_by_key(|&i| (self.arch_rank(&self.installed[i], primary), i))
    }

    /// 0 for the wanted arch, 1 for `all`, 2 for anything else.
    fn arch_rank(&self, p: &Installed, wanted: &str) -> u8 {
        if p.pkg.arch == wanted {
            0
        } else if p.pkg.arch == "all" {
            1
        } else {
            2
        }
    }

    /// Whether `candidate` can satisfy a dependency with `qualifier` from a
    /// package whose effective arch is `context` (dpkg's multiarch rules, see
    /// the module docs).
    fn arch_satisfies(&self, candidate: &Installed, context: &str, qualifier: Option<&str>) -> bool {
        let arch = candidate.pkg.arch.as_str();
        let same = arch == context || arch == "all";
        match qualifier {
            None => same || candidate.multi_arch == MultiArch::Foreign,
            Some("any") => same || matches!(candidate.multi_arch, MultiArch::Foreign | MultiArch::Allowed),
            Some("native") => arch == self.primary_arch || arch == "all",
            Some(wanted) => arch == wanted || (arch == "all" && wanted == self.primary_arch),
        }
    }

    /// The package that satisfies one alternative, if any.
    fn satisfy_alternative(&self, alt: &Alternative, context: &str, in_closure: &[bool]) -> Option<usize> {
        let qualifier = alt.qualifier.as_deref();
        let real = self.by_name.get(alt.name.as_str()).and_then(|cands| {
            cands
                .iter()
                .copied()
                .filter(|&i| self.arch_satisfies(&self.installed[i], context, qualifier))
                .min_by_key(|&i| (self.arch_rank(&self.installed[i], context), i))
        });
        if real.is_some() {
            return real;
        }
        self.providers.get(alt.name.as_str()).and_then(|cands| {
            cands
                .iter()
                .copied()
                .filter(|&i| self.arch_satisfies(&self.installed[i], context, qualifier))
                .min_by_key(|&i| (!in_closure[i], self.arch_rank(&self.installed[i], context), i))
        })
    }

    /// The package that satisfies a dependency group: its first satisfiable
    /// alternative.
    fn satisfy_group(&self, group: &DepGroup, context: &str, in_closure: &[bool]) -> Option<usize> {
        group.alternatives.iter().find_map(|alt| self.satisfy_alternative(alt, context, in_closure))
    }

    /// Resolves `names` and their `Depends`/`Pre-Depends` closure following
    /// dpkg's rules (see the module docs for the differences from supermin).
    ///
    /// The closure is a breadth-first walk starting from the requested
    /// packages in `(name, arch)` order and following each package's
    /// dependencies in field order, so "already in the closure" (used to pick
    /// among virtual-package providers) is deterministic.
    ///
    /// Cannot fail: the database was read by [`super::open_dpkg`].
    pub(super) fn closure(&self, names: &[String]) -> Resolution {
        let mut in_closure = vec![false; self.installed.len()];
        let mut missing: Vec<String> = Vec::new();
        let mut roots = Vec::new();
        for name in names {
            match self.lookup_request(name) {
                Some(i) => roots.push(i),
                None if !missing.contains(name) => missing.push(name.clone()),
                None => {}
            }
        }
        roots.sort_unstable();
        roots.dedup();
        for &i in &roots {
            in_closure[i] = true;
        }

        let mut queue: VecDeque<usize> = roots.into_iter().collect();
        let mut unsatisfied = Vec::new();
        while let Some(i) = queue.pop_front() {
            let package = &self.installed[i];
            // Architecture: all packages depend as if they were native.
            let context = match package.pkg.arch.as_str() {
                "all" => self.primary_arch.as_str(),
                arch => arch,
            };
            for group in &package.depends {
                match self.satisfy_group(group, context, &in_closure) {
                    Some(j) if !in_closure[j] => {
                        in_closure[j] = true;
                        queue.push_back(j);
                    }
                    Some(_) => {}
                    None => unsatisfied.push(Unsatisfied {
                        package: package.pkg.qualified_name(),
                        dependency: group.raw.clone(),
                    }),
                }
            }
        }

        let packages = self
            .installed
            .iter()
            .zip(&in_closure)
            .filter(|(_, &inside)| inside)
            .map(|(p, _)| p.pkg.clone())
            .collect();
        Resolution { packages, missing, unsatisfied }
    }
}

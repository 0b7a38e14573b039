//! Reading desired state through the git object database (git2): files at a revision, and the
//! files that changed since a revision. No checkout is ever made, so this works on a detached
//! HEAD and in a shallow CI clone that has the commits asked for.

use std::collections::BTreeSet;
use std::path::Path;

use git2::{
    DiffFindOptions, DiffOptions, ErrorCode, ObjectType, Repository, TreeWalkMode, TreeWalkResult,
};

use super::{MAX_FILE_BYTES, RawFile, SourceError, is_yaml};

const SYMLINK_MODE: i32 = 0o120000;

/// The git repository around `--repo`.
pub struct Repo {
    repo: Repository,
    /// `--repo`'s path inside the work tree, `/`-separated with a trailing `/`, or `""`.
    prefix: String,
}

/// The incident files at one revision.
pub(crate) struct FilesAt {
    pub commit: String,
    pub files: Vec<RawFile>,
}

/// What differs between a base revision and what is read; paths relative to `--repo`.
#[derive(Debug, Default)]
pub struct Changes {
    pub changed: BTreeSet<String>,
    pub deleted: Vec<String>,
}

impl Repo {
    /// The repository that contains `path`, or `None` when `path` is not inside git.
    pub fn discover(path: &Path) -> Result<Option<Repo>, SourceError> {
        let repo = match Repository::discover(path) {
            Ok(repo) => repo,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(git_error("cannot open the git repository", e)),
        };
        let prefix = match repo.workdir() {
            Some(workdir) => {
                let workdir = std::fs::canonicalize(workdir).map_err(|source| SourceError::Io {
                    path: workdir.display().to_string(),
                    source,
                })?;
                let here = std::fs::canonicalize(path).map_err(|source| SourceError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                let inside = here.strip_prefix(&workdir).unwrap_or(Path::new(""));
                let mut prefix: String = inside
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix
            }
            None => String::new(),
        };
        Ok(Some(Repo { repo, prefix }))
    }

    /// The commit checked out, if any.
    pub fn head_commit(&self) -> Option<String> {
        let head = self.repo.head().ok()?;
        Some(head.peel_to_commit().ok()?.id().to_string())
    }

    fn tree_at(&self, rev: &str) -> Result<(git2::Commit<'_>, git2::Tree<'_>), SourceError> {
        let object = self.repo.revparse_single(rev).map_err(|e| {
            SourceError::Git(format!(
                "unknown git revision `{rev}`: {} (in a shallow CI clone, fetch it first, e.g. `git fetch --depth=1 origin {rev}`)",
                e.message()
            ))
        })?;
        let commit = object
            .peel_to_commit()
            .map_err(|e| git_error(&format!("`{rev}` is not a commit"), e))?;
        let tree = commit
            .tree()
            .map_err(|e| git_error(&format!("cannot read the tree of `{rev}`"), e))?;
        Ok((commit, tree))
    }

    /// Every incident file below `incidents/` at `rev`, read from the object database.
    pub(crate) fn read_incidents_at(&self, rev: &str) -> Result<FilesAt, SourceError> {
        let (commit, root) = self.tree_at(rev)?;
        let dir = format!("{}incidents", self.prefix);
        let entry = match root.get_path(Path::new(&dir)) {
            Ok(entry) => entry,
            Err(e) if e.code() == ErrorCode::NotFound => {
                return Err(SourceError::Git(format!(
                    "there is no {dir}/ folder at revision `{rev}`"
                )));
            }
            Err(e) => return Err(git_error("cannot read the tree", e)),
        };
        let tree = entry
            .to_object(&self.repo)
            .and_then(|o| o.peel_to_tree())
            .map_err(|e| git_error(&format!("{dir} is not a folder at `{rev}`"), e))?;

        let mut found: Vec<(String, git2::Oid, i32)> = Vec::new();
        tree.walk(TreeWalkMode::PreOrder, |parent, entry| {
            if entry.kind() == Some(ObjectType::Blob)
                && let Ok(name) = entry.name()
                && is_yaml(name)
            {
                found.push((format!("{parent}{name}"), entry.id(), entry.filemode()));
            }
            TreeWalkResult::Ok
        })
        .map_err(|e| git_error("cannot walk the tree", e))?;

        let mut files = Vec::with_capacity(found.len());
        for (inside, oid, mode) in found {
            let path = format!("incidents/{inside}");
            let content = if mode == SYMLINK_MODE {
                self.follow_link(&root, &path, oid)
            } else {
                self.blob(oid)
            };
            files.push(RawFile { path, content });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(FilesAt {
            commit: commit.id().to_string(),
            files,
        })
    }

    fn blob(&self, oid: git2::Oid) -> Result<Vec<u8>, String> {
        let blob = self
            .repo
            .find_blob(oid)
            .map_err(|e| format!("cannot be read from git: {}", e.message()))?;
        if blob.size() as u64 > MAX_FILE_BYTES {
            return Err(format!(
                "is {} bytes; incident files are at most {MAX_FILE_BYTES} bytes",
                blob.size()
            ));
        }
        Ok(blob.content().to_vec())
    }

    /// A committed symbolic link is followed only while it stays inside `--repo`.
    fn follow_link(
        &self,
        root: &git2::Tree<'_>,
        path: &str,
        oid: git2::Oid,
    ) -> Result<Vec<u8>, String> {
        let target = self.blob(oid)?;
        let target = String::from_utf8_lossy(&target).into_owned();
        let outside = || {
            format!(
                "is a symbolic link to {target}, outside the repository; incidentops does not follow links out of --repo (copy the file in instead)"
            )
        };
        if target.starts_with('/') {
            return Err(outside());
        }
        // Resolve against the link's folder, inside --repo.
        let mut parts: Vec<&str> = path.split('/').collect();
        parts.pop();
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(outside());
                    }
                }
                other => parts.push(other),
            }
        }
        let resolved = format!("{}{}", self.prefix, parts.join("/"));
        let entry = root
            .get_path(Path::new(&resolved))
            .map_err(|_| "is a symbolic link to nothing (dangling link)".to_string())?;
        if entry.filemode() == SYMLINK_MODE || entry.kind() != Some(ObjectType::Blob) {
            return Err("is a symbolic link to a link or a folder; link to the file itself".into());
        }
        self.blob(entry.id())
    }

    /// Files below `incidents/` that differ between `base` and `rev` (or the working tree,
    /// untracked files included). A renamed file counts as changed under its new name.
    pub fn changed_since(&self, base: &str, rev: Option<&str>) -> Result<Changes, SourceError> {
        let (_, base_tree) = self.tree_at(base)?;
        let mut options = DiffOptions::new();
        options
            .pathspec(format!("{}incidents", self.prefix))
            .include_untracked(true)
            .recurse_untracked_dirs(true);
        let mut diff = match rev {
            Some(rev) => {
                let (_, tree) = self.tree_at(rev)?;
                self.repo
                    .diff_tree_to_tree(Some(&base_tree), Some(&tree), Some(&mut options))
            }
            None => self
                .repo
                .diff_tree_to_workdir_with_index(Some(&base_tree), Some(&mut options)),
        }
        .map_err(|e| git_error("cannot compare revisions", e))?;
        let mut find = DiffFindOptions::new();
        find.renames(true).for_untracked(true);
        diff.find_similar(Some(&mut find))
            .map_err(|e| git_error("cannot detect renames", e))?;

        let mut changes = Changes::default();
        for delta in diff.deltas() {
            let strip = |p: Option<&Path>| {
                p.map(|p| p.to_string_lossy().replace('\\', "/"))
                    .and_then(|p| p.strip_prefix(&self.prefix).map(str::to_string))
            };
            match delta.status() {
                git2::Delta::Deleted => {
                    if let Some(old) = strip(delta.old_file().path()) {
                        changes.deleted.push(old);
                    }
                }
                _ => {
                    if let Some(new) = strip(delta.new_file().path()) {
                        changes.changed.insert(new);
                    }
                }
            }
        }
        changes.deleted.sort();
        Ok(changes)
    }
}

fn git_error(context: &str, error: git2::Error) -> SourceError {
    SourceError::Git(format!("{context}: {}", error.message()))
}

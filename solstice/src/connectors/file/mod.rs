//! File connectors: JSON lines, CSV and Parquet.
//!
//! [`FileSource`] reads files (paths, directories or globs) in the format named by `format:` or
//! implied by the extension, split across subtasks: JSONL by byte ranges on line boundaries, CSV
//! by whole files, Parquet by row groups. Records that fail to decode follow the source's
//! `on_error` policy. [`FileSink`] writes one file per subtask, `part-{subtask:05}.<ext>`, under a
//! temporary name renamed into place when the subtask completes (removed if the run fails); its
//! path is checked when the job is built (`sink_dir.rs`). Their options
//! ([`FileSourceOptions`], [`FileSinkOptions`]) are in `options.rs`, read from the connector's own
//! config section.

mod csv;
mod jsonl;
mod options;
mod output;
mod parquet;
mod reject;
mod sink_dir;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::Serialize;

use self::csv::{CsvReader, CsvWriter};
use self::jsonl::{JsonlReader, JsonlWriter};
pub use self::options::{
    Compression, CsvOptions, FileSinkOptions, FileSourceOptions, Format, OnError, ParquetOptions,
    Paths,
};
use self::output::OutputDir;
use self::parquet::{ParquetReader, ParquetWriter};
use self::reject::Rejects;
use crate::config::{SinkConfig, SourceConfig};
use crate::core::connector::{RunStart, Sink, SinkMode, SinkWriter, Source, SourceReader};
use crate::core::Data;
use crate::error::{Error, Result};

/// The file a [`FileSink`] keeps in its directory, naming the job whose output the directory
/// holds (hidden, so readers of the directory skip it).
pub const SINK_MARKER: &str = ".solstice-sink.json";

/// Reads records of type `T` from JSONL, CSV or Parquet files.
pub struct FileSource<T> {
    files: Vec<(PathBuf, u64)>,
    format: Format,
    csv: CsvOptions,
    /// Every split of the input, in reading order (Parquet row groups are read from the
    /// footers at build time), and the index of each by name.
    splits: Vec<FileSplit>,
    by_name: HashMap<String, usize>,
    rejects: Rejects,
    _t: PhantomData<fn() -> T>,
}

/// One split of a [`FileSource`]'s input.
#[derive(Clone, Debug)]
enum FileSplit {
    /// A byte range of a JSONL file.
    Jsonl(jsonl::Split),
    /// A whole CSV file.
    Csv(PathBuf),
    /// A row group of a Parquet file.
    Parquet(parquet::RowGroup),
}

impl FileSplit {
    fn name(&self) -> String {
        match self {
            FileSplit::Jsonl(s) => s.key(),
            FileSplit::Csv(path) => path.display().to_string(),
            FileSplit::Parquet(g) => g.key(),
        }
    }
}

impl<T> std::fmt::Debug for FileSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("format", &self.format)
            .field("files", &self.files)
            .finish()
    }
}

impl<T: DeserializeOwned + Data> FileSource<T> {
    /// The source described by `sources.<stage>` in the job config ([`FileSourceOptions`]).
    pub fn from_config(cfg: &SourceConfig) -> Result<Self> {
        let options: FileSourceOptions = cfg.options()?;
        // Each path on its own, so that an error about it can say what a relative one was taken
        // relative to.
        let mut files = Vec::new();
        for given in options.path.to_vec() {
            let path = cfg.resolve_path("path", &given);
            let note = || cfg.relative_note("path", &given);
            files.extend(resolve(&[path], cfg.stage()).map_err(|e| match e {
                Error::Io { path, source } => {
                    cfg.error("path", format!("{}: {source}{}", path.display(), note()))
                }
                Error::NoInput { stage, pattern } => Error::NoInput {
                    stage,
                    pattern: format!("{pattern}{}", note()),
                },
                e => e,
            })?);
        }
        // Paths may overlap (a directory and a glob in it): each file is read once.
        files.sort();
        files.dedup();
        let format = match options.format {
            Some(f) => f,
            None => infer_format(&files).map_err(|m| cfg.error("format", m))?,
        };
        csv::check(&options.csv).map_err(|m| cfg.error("csv", m))?;
        let rejects = Rejects::from_config(cfg, &options)?;
        Self::with(files, format, options.csv, rejects)
    }

    /// A source over explicit paths (files, directories or globs), format from the extension;
    /// bad records fail the job.
    pub fn new<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Result<Self> {
        let paths: Vec<PathBuf> = paths
            .into_iter()
            .map(|p| p.as_ref().to_path_buf())
            .collect();
        let files = resolve(&paths, "source")?;
        let format = infer_format(&files).map_err(|m| Error::Plan(format!("source: {m}")))?;
        Self::with(files, format, CsvOptions::default(), Rejects::fail())
    }

    fn with(
        files: Vec<(PathBuf, u64)>,
        format: Format,
        csv: CsvOptions,
        rejects: Rejects,
    ) -> Result<Self> {
        let splits: Vec<FileSplit> = match format {
            Format::Jsonl => jsonl::splits(&files)
                .into_iter()
                .map(FileSplit::Jsonl)
                .collect(),
            Format::Csv => files
                .iter()
                .map(|(p, _)| FileSplit::Csv(p.clone()))
                .collect(),
            Format::Parquet => parquet::row_groups(&files)?
                .into_iter()
                .map(FileSplit::Parquet)
                .collect(),
        };
        let by_name = splits
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name(), i))
            .collect();
        Ok(FileSource {
            files,
            format,
            csv,
            splits,
            by_name,
            rejects,
            _t: PhantomData,
        })
    }

    /// The input files, in reading order, with their sizes.
    pub fn files(&self) -> &[(PathBuf, u64)] {
        &self.files
    }

    /// The format the files are read in.
    pub fn format(&self) -> Format {
        self.format
    }
}

/// The one format all files' extensions agree on (JSONL when none says).
fn infer_format(files: &[(PathBuf, u64)]) -> std::result::Result<Format, String> {
    let mut found: Option<Format> = None;
    for (path, _) in files {
        let f = Format::from_extension(path).unwrap_or(Format::Jsonl);
        match found {
            Some(prev) if prev != f => {
                return Err(format!(
                    "input files have different formats ({prev:?} and {f:?} for {}); set `format`",
                    path.display()
                ))
            }
            _ => found = Some(f),
        }
    }
    Ok(found.unwrap_or(Format::Jsonl))
}

fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Expands paths, directories and globs into a sorted, de-duplicated list of files with sizes.
fn resolve(paths: &[PathBuf], stage: &str) -> Result<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    for path in paths {
        let text = path.to_string_lossy();
        if is_glob(&text) {
            let entries = glob::glob(&text).map_err(|e| Error::NoInput {
                stage: stage.to_string(),
                pattern: format!("{text} (invalid glob: {e})"),
            })?;
            let before = files.len();
            for entry in entries {
                let p = entry.map_err(|e| Error::io(e.path().to_path_buf(), e.into()))?;
                if p.is_file() {
                    files.push(p);
                }
            }
            if files.len() == before {
                return Err(Error::NoInput {
                    stage: stage.to_string(),
                    pattern: text.into_owned(),
                });
            }
        } else if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect();
            if found.is_empty() {
                return Err(Error::NoInput {
                    stage: stage.to_string(),
                    pattern: format!("{} (empty directory)", path.display()),
                });
            }
            found.sort();
            files.extend(found);
        } else {
            std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
            files.push(path.clone());
        }
    }
    files.sort();
    files.dedup();
    files
        .into_iter()
        .map(|p| {
            let len = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?.len();
            Ok((p, len))
        })
        .collect()
}

impl<T: DeserializeOwned + Data> Source for FileSource<T> {
    type Item = T;
    type Reader = FileReader<T>;

    fn start(&self) -> Result<()> {
        self.rejects.start()
    }

    fn splits(&self) -> Result<Vec<String>> {
        Ok(self.splits.iter().map(FileSplit::name).collect())
    }

    fn open(&self, split: &str, resume: Option<u64>) -> Result<FileReader<T>> {
        let found = self.by_name.get(split).and_then(|&i| self.splits.get(i));
        let Some(found) = found else {
            let files: Vec<String> = self
                .files
                .iter()
                .map(|(p, len)| format!("{} ({len} bytes)", p.display()))
                .collect();
            return Err(Error::BadFile {
                path: PathBuf::from(split),
                reason: format!(
                    "not a split of this source's input as this process sees it: {} (every \
                     process of a job must see the same files)",
                    files.join(", ")
                ),
            });
        };
        let rejects = self.rejects.clone();
        Ok(FileReader(match found.clone() {
            FileSplit::Jsonl(mut s) => {
                // A resumed position at the split's start is where a fresh reader starts too.
                s.resume = resume.filter(|&at| at > s.start);
                ReaderFormat::Jsonl(JsonlReader::open(s, rejects)?)
            }
            FileSplit::Csv(path) => {
                ReaderFormat::Csv(CsvReader::open(path, &self.csv, rejects, resume)?)
            }
            FileSplit::Parquet(group) => {
                let skip = usize::try_from(resume.unwrap_or(0)).unwrap_or(usize::MAX);
                ReaderFormat::Parquet(ParquetReader::new(group, skip, rejects))
            }
        }))
    }
}

/// The reader of one [`FileSource`] split.
pub struct FileReader<T>(ReaderFormat<T>);

enum ReaderFormat<T> {
    Jsonl(JsonlReader<T>),
    Csv(CsvReader<T>),
    Parquet(ParquetReader<T>),
}

impl<T: DeserializeOwned + Data> SourceReader<T> for FileReader<T> {
    fn read_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<bool> {
        match &mut self.0 {
            ReaderFormat::Jsonl(r) => r.read_batch(out, max),
            ReaderFormat::Csv(r) => r.read_batch(out, max),
            ReaderFormat::Parquet(r) => r.read_batch(out, max),
        }
    }

    fn position(&self) -> Result<u64> {
        Ok(match &self.0 {
            ReaderFormat::Jsonl(r) => r.position(),
            ReaderFormat::Csv(r) => r.position(),
            ReaderFormat::Parquet(r) => r.position(),
        })
    }
}

/// Writes records as JSONL, CSV or Parquet, one file per sink subtask.
pub struct FileSink<T> {
    /// Its directory, mode and stage name.
    output: OutputDir,
    format: Format,
    csv: CsvOptions,
    parquet: ParquetOptions,
    /// The tag of this run's file names (`append` mode), set when the run begins.
    tag: Mutex<Option<String>>,
    /// The run's epoch ([`RunStart::epoch`]), set when it begins: staging names carry it.
    epoch: AtomicU64,
    _t: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for FileSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("dir", &self.output.dir)
            .field("mode", &self.output.mode)
            .field("format", &self.format)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned + Data> FileSink<T> {
    /// The sink described by `sinks.<stage>` in the job config ([`FileSinkOptions`]).
    pub fn from_config(cfg: &SinkConfig) -> Result<Self> {
        let options: FileSinkOptions = cfg.options()?;
        csv::check(&options.csv).map_err(|m| cfg.error("csv", m))?;
        if options.parquet.row_group_size == 0 {
            return Err(cfg.error("parquet.row_group_size", "must be at least 1"));
        }
        // Refused here, when the job is built, rather than by the first subtask's `open`.
        let dir = cfg.resolve_path("path", &options.path);
        sink_dir::check(&dir).map_err(|m| {
            cfg.error(
                "path",
                format!("{m}{}", cfg.relative_note("path", &options.path)),
            )
        })?;
        let format = options.format.unwrap_or(Format::Jsonl);
        if format == Format::Parquet {
            // Fail at build time, not in the first write, when `T` has no Arrow schema.
            parquet::fields_of::<T>(cfg.stage())?;
        }
        Ok(FileSink {
            output: OutputDir {
                dir,
                mode: options.mode,
                stage: cfg.stage().to_string(),
                origin: cfg.origin_of("path"),
            },
            format,
            csv: options.csv,
            parquet: options.parquet,
            tag: Mutex::new(None),
            epoch: AtomicU64::new(0),
            _t: PhantomData,
        })
    }

    /// A JSONL sink writing `part-*.jsonl` files into `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::with_format(dir, Format::Jsonl)
    }

    /// A sink writing `part-*.<ext>` files in `format` into `dir`, with default options
    /// (mode [`SinkMode::Error`]).
    pub fn with_format(dir: impl Into<PathBuf>, format: Format) -> Self {
        let dir = dir.into();
        FileSink {
            output: OutputDir {
                stage: "sink".into(),
                origin: dir.display().to_string(),
                dir,
                mode: SinkMode::Error,
            },
            format,
            csv: CsvOptions::default(),
            parquet: ParquetOptions::default(),
            tag: Mutex::new(None),
            epoch: AtomicU64::new(0),
            _t: PhantomData,
        }
    }

    /// The same sink with output mode `mode`.
    pub fn with_mode(mut self, mode: SinkMode) -> Self {
        self.output.mode = mode;
        self
    }

    /// The final path of subtask `subtask`'s file in a job without checkpoints (outside
    /// `append` mode).
    pub fn part_path(&self, subtask: usize) -> PathBuf {
        self.output
            .dir
            .join(format!("part-{subtask:05}.{}", self.format.extension()))
    }
}

impl<T: Serialize + DeserializeOwned + Data> FileSink<T> {
    /// Opens a new in-progress file of `subtask`, whose names end with `suffix`, for the run
    /// whose staging names carry `run`.
    fn create(&self, subtask: usize, suffix: &str, run: &str) -> Result<(WriterFormat, PathBuf)> {
        let ext = self.format.extension();
        let temp = self
            .output
            .dir
            .join(format!(".part-{subtask:05}{suffix}.{ext}{run}.inprogress"));
        let file = File::create(&temp).map_err(|e| Error::io(&temp, e))?;
        let format = match self.format {
            Format::Jsonl => WriterFormat::Jsonl(JsonlWriter {
                out: BufWriter::with_capacity(256 << 10, file),
            }),
            Format::Csv => WriterFormat::Csv(CsvWriter::create(file, &self.csv)?),
            Format::Parquet => {
                let fields = parquet::fields_of::<T>(&self.output.stage)?;
                WriterFormat::Parquet(ParquetWriter::create(file, fields, &self.parquet, &temp)?)
            }
        };
        Ok((format, temp))
    }
}

/// Makes a written (and flushed) file durable when `sync` is set.
fn sync_if(file: &File, sync: bool, path: &Path) -> Result<()> {
    if sync {
        file.sync_all().map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// What the staging file names of the run of `epoch` carry: `.e00000003`.
fn staging_run(epoch: u64) -> String {
    format!(".e{epoch:08}")
}

/// The published name of a staged file: `.NAME.e{epoch}.pending` → `NAME`, in the same
/// directory.
fn published(staged: &Path) -> Option<PathBuf> {
    let name = staged.file_name()?.to_str()?;
    let name = name.strip_prefix('.')?.strip_suffix(".pending")?;
    let (name, run) = name.rsplit_once('.')?;
    let epoch = run.strip_prefix('e')?;
    (epoch.len() == 8 && epoch.bytes().all(|b| b.is_ascii_digit()))
        .then(|| staged.with_file_name(name))
}

impl<T: Serialize + DeserializeOwned + Data> Sink for FileSink<T> {
    type Item = T;
    type Writer = FileWriter<T>;

    fn open(&self, subtask: usize, _parallelism: usize) -> Result<FileWriter<T>> {
        let tag = self.tag.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let suffix = output::suffix(tag.as_deref());
        let epoch = self.epoch.load(Ordering::Acquire);
        let run = staging_run(epoch);
        let dir = &self.output.dir;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let current = Some(self.create(subtask, &suffix, &run)?);
        let target = dir.join(format!(
            "part-{subtask:05}{suffix}.{}",
            self.format.extension()
        ));
        Ok(FileWriter {
            sink: FileSink {
                output: self.output.clone(),
                format: self.format,
                csv: self.csv.clone(),
                parquet: self.parquet.clone(),
                tag: Mutex::new(tag),
                epoch: AtomicU64::new(epoch),
                _t: PhantomData,
            },
            subtask,
            suffix,
            run,
            current,
            written: false,
            target,
        })
    }

    fn commit(&self, transaction: &str) -> Result<()> {
        let staged = PathBuf::from(transaction);
        let target = published(&staged)
            .ok_or_else(|| Error::Internal(format!("`{transaction}` is not a staged part file")))?;
        match std::fs::rename(&staged, &target) {
            Ok(()) => Ok(()),
            // Published by an earlier attempt: committing is idempotent.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && target.exists() => Ok(()),
            Err(e) => Err(Error::io(&staged, e)),
        }
    }

    /// Syncs the staged file: the writer closed it without waiting for the disk. A transaction
    /// also listed by a later checkpoint may be published (and synced) already.
    fn persist(&self, transaction: &str) -> Result<()> {
        let staged = Path::new(transaction);
        match File::open(staged).and_then(|f| f.sync_all()) {
            Ok(()) => Ok(()),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && published(staged).is_some_and(|p| p.exists()) =>
            {
                Ok(())
            }
            Err(e) => Err(Error::io(staged, e)),
        }
    }

    fn check_start(&self, start: &RunStart<'_>) -> Result<()> {
        self.output.check_start(start)
    }

    fn begin(&self, start: &RunStart<'_>) -> Result<()> {
        let tag = self.output.begin(start)?;
        *self.tag.lock().unwrap_or_else(|p| p.into_inner()) = tag;
        self.epoch.store(start.epoch(), Ordering::Release);
        Ok(())
    }
}

enum WriterFormat {
    Jsonl(JsonlWriter),
    Csv(CsvWriter),
    Parquet(ParquetWriter),
}

impl WriterFormat {
    /// Completes the file; with `sync`, durably (staged files are made durable later, by
    /// [`Sink::persist`], off the writer's thread).
    fn close(&mut self, temp: &Path, sync: bool) -> Result<()> {
        match self {
            WriterFormat::Jsonl(w) => w.finish(temp, sync),
            WriterFormat::Csv(w) => w.finish(temp, sync),
            WriterFormat::Parquet(w) => w.finish(temp, sync),
        }
    }
}

/// Writes one sink subtask's part files: `part-{subtask:05}.<ext>` when the job takes no
/// checkpoints; with checkpoints, one file per checkpoint interval, staged at the barrier
/// (`.part-{subtask:05}-{checkpoint:08}.<ext>.e{epoch:08}.pending`, named after the run's
/// epoch so that another run of the job never writes the same file) and published when the checkpoint is
/// complete (`part-{subtask:05}-{checkpoint:08}.<ext>`; the tail goes with the final checkpoint,
/// taken at end of stream).
pub struct FileWriter<T> {
    sink: FileSink<T>,
    subtask: usize,
    /// What the run's file names end with (`-{tag}` in `append` mode).
    suffix: String,
    /// What the run's staging file names carry (its epoch), so that they are its own.
    run: String,
    current: Option<(WriterFormat, PathBuf)>,
    /// Whether records went into `current`.
    written: bool,
    target: PathBuf,
}

/// A writer dropped with a file still open belongs to a run that failed (or was stopped):
/// nothing will finish that file, so it goes, and a failed run leaves no in-progress file behind.
/// Staged (`.pending`) files are the checkpoint's business (see [`Sink::begin`]).
impl<T> Drop for FileWriter<T> {
    fn drop(&mut self) {
        if let Some((format, temp)) = self.current.take() {
            drop(format);
            // Best effort: a drop cannot report, and a left file is removed on restore anyway.
            let _ = std::fs::remove_file(&temp);
        }
    }
}

impl<T: Serialize + DeserializeOwned + Data> SinkWriter<T> for FileWriter<T> {
    fn write_batch(&mut self, batch: &mut Vec<T>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.current.is_none() {
            self.current = Some(self.sink.create(self.subtask, &self.suffix, &self.run)?);
        }
        self.written = true;
        let Some((format, temp)) = self.current.as_mut() else {
            return Err(Error::Internal("no open part file".into()));
        };
        let stage = &self.sink.output.stage;
        match format {
            WriterFormat::Jsonl(w) => w.write(batch, temp, stage),
            WriterFormat::Csv(w) => w.write(batch, temp, stage),
            WriterFormat::Parquet(w) => w.write(batch, temp, stage),
        }
    }

    fn finish(&mut self) -> Result<()> {
        if let Some((mut format, temp)) = self.current.take() {
            format.close(&temp, true)?;
            std::fs::rename(&temp, &self.target).map_err(|e| Error::io(&self.target, e))?;
        }
        Ok(())
    }

    fn pre_commit(&mut self, checkpoint: u64) -> Result<Option<String>> {
        let Some((mut format, temp)) = self.current.take() else {
            return Ok(None);
        };
        format.close(&temp, false)?;
        if !std::mem::take(&mut self.written) {
            // Nothing since the last checkpoint: no empty file to publish.
            std::fs::remove_file(&temp).map_err(|e| Error::io(&temp, e))?;
            return Ok(None);
        }
        let ext = self.sink.format.extension();
        let staged = self.sink.output.dir.join(format!(
            ".part-{:05}-{checkpoint:08}{}.{ext}{}.pending",
            self.subtask, self.suffix, self.run
        ));
        std::fs::rename(&temp, &staged).map_err(|e| Error::io(&staged, e))?;
        Ok(Some(staged.display().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_splits_cover_every_line_once() {
        let dir = std::env::temp_dir().join(format!("solstice-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("n.jsonl");
        let mut text = String::new();
        for i in 0..200_000u64 {
            text.push_str(&format!("{i}\n"));
        }
        std::fs::write(&path, &text).unwrap();
        let src = FileSource::<u64>::new([&path]).unwrap();
        let splits = src.splits().unwrap();
        assert!(splits.len() > 1, "{splits:?}");
        let mut all = Vec::new();
        for split in &splits {
            let mut r = src.open(split, None).unwrap();
            while r.read_batch(&mut all, 1000).unwrap() {}
        }
        assert_eq!(all, (0..200_000).collect::<Vec<_>>());
        // Resumed at the position a reader reported, a split goes on with the next line.
        let mut resumed = Vec::new();
        for split in &splits {
            let mut r = src.open(split, None).unwrap();
            r.read_batch(&mut resumed, 777).unwrap();
            let mut r = src.open(split, Some(r.position().unwrap())).unwrap();
            while r.read_batch(&mut resumed, 1000).unwrap() {}
        }
        assert_eq!(resumed, all);
        let Err(e) = src.open("elsewhere.jsonl@0", None) else {
            panic!("a split of another input opened");
        };
        let e = e.to_string();
        assert!(
            e.contains("elsewhere.jsonl@0") && e.contains("n.jsonl"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_line_names_file_and_line_in_any_split() {
        let dir = std::env::temp_dir().join(format!("solstice-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.jsonl");
        let mut text = String::new();
        for i in 0..300_000u64 {
            if i == 250_000 {
                text.push_str("{oops\n");
            } else {
                text.push_str(&format!("{i}\n"));
            }
        }
        std::fs::write(&path, &text).unwrap();
        let src = FileSource::<u64>::new([&path]).unwrap();
        let mut errors = Vec::new();
        for split in src.splits().unwrap() {
            let mut r = src.open(&split, None).unwrap();
            let mut buf = Vec::new();
            loop {
                match r.read_batch(&mut buf, 4096) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        errors.push(e.to_string());
                        break;
                    }
                }
            }
        }
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("bad.jsonl:250001:"), "{}", errors[0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

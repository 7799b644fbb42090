//! Every name of a raw disk image as a TSK bodyfile on stdout, as
//! `fls -r -m /` lists it: the readers alone, without a store, for
//! comparing with The Sleuth Kit and for timing the walk.
//!
//! `cargo run --release -p custody-disk --example bodyfile -- IMAGE`

use std::io::{BufWriter, Write};
use std::sync::Arc;

use custody_disk::fs::{self, bodyfile, walk};
use custody_disk::image::{FileImage, ReadAt, Window};
use custody_disk::volume;

fn main() -> std::process::ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: bodyfile IMAGE");
        return std::process::ExitCode::from(2);
    };
    let img: Arc<dyn ReadAt> = match FileImage::open(std::path::Path::new(&path)) {
        Ok(i) => Arc::new(i),
        Err(e) => {
            eprintln!("bodyfile: {}: {e}", path.to_string_lossy());
            return std::process::ExitCode::from(2);
        }
    };
    let layout = match volume::layout(img.as_ref()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bodyfile: reading the volume layout: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let out = std::io::stdout();
    let mut out = BufWriter::new(out.lock());
    for v in &layout.volumes {
        let window: Arc<dyn ReadAt> = Arc::new(Window::new(img.clone(), v.start, v.length));
        let Some(opened) = fs::open(window, v.content) else {
            continue;
        };
        let fs = match opened {
            Ok(fs) => fs,
            Err(e) => {
                eprintln!("bodyfile: volume {}: {e}", v.index);
                continue;
            }
        };
        let mut failed = None;
        let problems = walk::walk(fs.as_ref(), &mut |r| {
            if failed.is_none()
                && let Err(e) = bodyfile::write(&mut out, &r)
            {
                failed = Some(e);
            }
        });
        for p in problems {
            eprintln!("bodyfile: volume {}: {}: {}", v.index, p.at, p.what);
        }
        if let Some(e) = failed {
            eprintln!("bodyfile: writing: {e}");
            return std::process::ExitCode::from(2);
        }
    }
    if let Err(e) = out.flush() {
        eprintln!("bodyfile: writing: {e}");
        return std::process::ExitCode::from(2);
    }
    std::process::ExitCode::SUCCESS
}

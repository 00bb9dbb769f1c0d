"""Executes one notebook with nbclient, cell by cell, for `wb nb run`.

Usage: execute.py <input.ipynb> <output.ipynb> <report.html> <kernel> <cell-timeout-s> <report-code 0|1>

Prints one JSON line per code cell to stderr ({"cell": i, "of": n, "seconds": s}) for progress, and
a final JSON summary to stdout. Stops at the first failing cell; the notebook executed so far and
its HTML report are written either way (to temporary names, then renamed), so a failure can be read.
"""
import json
import os
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError


def write_atomic(path, text):
    tmp = f"{os.path.dirname(path) or '.'}/.{os.path.basename(path)}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


PLOT_MARKER = 'class="wb-plot"'


def with_plotly(body):
    """The report with plotly.js inlined once in its head, if it shows a figure: figures draw with the
    page's `window.Plotly` (display.ts), so the report works from a file, offline, with no server."""
    script = os.environ.get("WB_PLOTLY_JS")
    if PLOT_MARKER not in body or not script or "</head>" not in body:
        return body
    with open(script, encoding="utf-8") as f:
        plotly = f.read().replace("</script", "<\\/script")
    head_end = body.index("</head>")
    return f'{body[:head_end]}<script type="text/javascript">{plotly}</script>\n{body[head_end:]}'


def sign(nb):
    """Marks the executed notebook as trusted for this user's Jupyter, as Jupyter does for a notebook it
    ran and saved itself: otherwise Jupyter hides the figures' scripts when the notebook is opened."""
    try:
        from nbformat.sign import NotebookNotary

        NotebookNotary().sign(nb)
    except Exception as e:  # no signature database: the notebook opens untrusted, nothing else changes
        print(json.dumps({"warning": f"the executed notebook is not signed: {type(e).__name__}: {e}"}), file=sys.stderr, flush=True)


STARTUP_TIMEOUT = int(os.environ.get("WB_KERNEL_ANSWER_TIMEOUT", "30"))


def run_cells(client, nb, code_cells, summary, timeout):
    for n, index in enumerate(code_cells, start=1):
        t0 = time.time()
        try:
            client.execute_cell(nb.cells[index], index)
        except CellTimeoutError:
            summary.update(status="timeout", failed_cell=index, reason=f"the cell ran longer than {timeout} s")
        except CellExecutionError as e:
            summary.update(status="error", failed_cell=index, reason=str(e).strip()[:4000])
        except DeadKernelError as e:
            summary.update(status="dead_kernel", failed_cell=index, reason=f"the kernel died: {e}")
        print(json.dumps({"cell": n, "of": len(code_cells), "index": index, "seconds": round(time.time() - t0, 3)}),
              file=sys.stderr, flush=True)
        if summary["status"] != "ok":
            break


def main():
    src, out, html, kernel, timeout, report_code = sys.argv[1:7]
    nb = nbformat.read(src, as_version=4)
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    summary = {"status": "ok", "failed_cell": None, "reason": None, "seconds": 0.0}
    started = time.time()
    # A kernel that never answers its first kernel_info (tslab can lose its message loop while it
    # binds its sockets) is started once more, after a shorter first wait than nbclient's 60 s.
    for attempt in (1, 2):
        client = NotebookClient(
            nb,
            kernel_name=kernel,
            timeout=int(timeout),
            startup_timeout=STARTUP_TIMEOUT if attempt == 1 else 60,
            allow_errors=False,
            record_timing=True,
            resources={"metadata": {"path": os.path.dirname(os.path.abspath(src))}},
        )
        ran = False
        try:
            with client.setup_kernel():
                ran = True
                run_cells(client, nb, code_cells, summary, timeout)
            break
        except Exception as e:  # the kernel could not start, or nbclient itself failed
            if not ran and attempt == 1 and "didn't respond" in str(e):
                print(json.dumps({"restart": f"{type(e).__name__}: {e}"}), file=sys.stderr, flush=True)
                continue
            if summary["status"] == "ok":
                summary.update(status="kernel_error", reason=f"{type(e).__name__}: {e}")
            break
    summary["seconds"] = round(time.time() - started, 3)

    sign(nb)
    write_atomic(out, nbformat.writes(nb))
    try:
        from nbconvert import HTMLExporter

        exporter = HTMLExporter(template_name="lab", exclude_input=report_code != "1")
        body, _ = exporter.from_notebook_node(nb)
        write_atomic(html, with_plotly(body))
    except Exception as e:  # a report that cannot be written must not hide the run's own result
        summary["report_error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()

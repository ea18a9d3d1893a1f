"""Evidence files as Allure attachments, each with its MIME type, and each capture also as text (one line a frame),
so a failure's packets read in the browser without Wireshark."""
from __future__ import annotations

from pathlib import Path

PCAP, JSON, TEXT, XML, HTML, CSV = ("application/vnd.tcpdump.pcap", "application/json", "text/plain",
                                    "application/xml", "text/html", "text/csv")
BY_SUFFIX = {".pcap": PCAP, ".json": JSON, ".log": TEXT, ".txt": TEXT, ".xml": XML, ".html": HTML, ".csv": CSV}
EXTENSION = {PCAP: "pcap", JSON: "json", TEXT: "txt", XML: "xml", HTML: "html", CSV: "csv"}
MAX_FRAMES = 2000  # a capture's text stops there, saying how many frames it left out
EMPTY_PCAP = 24  # bytes: a pcap's global header and no frame


def mime_type(path: Path) -> str:
    """The MIME type an evidence file is attached with: by suffix; text for the rest (esp_sa, peer logs, SA state)."""
    return BY_SUFFIX.get(path.suffix.lower(), TEXT)


def pcap_text(path: Path, limit: int = MAX_FRAMES) -> str:
    """One line per frame: number, seconds from the first frame, length and scapy's summary of the layers."""
    from scapy.utils import PcapReader  # noqa: PLC0415 - scapy loads slowly; only a failure's evidence needs it

    lines, first, n = [], None, 0
    with PcapReader(str(path)) as frames:
        for n, pkt in enumerate(frames, 1):
            if n > limit:
                continue
            t = float(pkt.time)
            first = t if first is None else first
            lines.append(f"{n:5d} {t - first:10.6f} {len(pkt):5d}  {pkt.summary()}")
    if n > limit:
        lines.append(f"... {n - limit} more frames: open {path.name} in Wireshark")
    return "\n".join(lines) + "\n"


def attach(paths: list[Path]) -> list[str]:
    """Attach each existing file to the running Allure test (an empty pcap is left out) with its MIME type, and each
    pcap's text beside it; the names attached. Call only with allure-pytest active."""
    import allure  # noqa: PLC0415 - only with allure-pytest active
    from allure_commons.types import AttachmentType  # noqa: PLC0415

    kinds = {t.mime_type: t for t in AttachmentType}
    names = []
    for path in paths:
        if not path.exists() or (path.suffix == ".pcap" and path.stat().st_size <= EMPTY_PCAP):
            continue
        kind = mime_type(path)
        allure.attach.file(str(path), name=path.name, attachment_type=kinds[kind], extension=EXTENSION[kind])
        names.append(path.name)
        if kind == PCAP:
            try:
                text = pcap_text(path)
            except Exception as e:  # noqa: BLE001 - a capture scapy cannot read still has its pcap attached
                text = f"could not read {path.name}: {type(e).__name__}: {e}\n"
            allure.attach(text, name=f"{path.name}.txt", attachment_type=AttachmentType.TEXT, extension="txt")
            names.append(f"{path.name}.txt")
    return names

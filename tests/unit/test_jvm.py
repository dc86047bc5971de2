"""The project's jar (jobs.jvm): built from the Java sources beside it, for Java 17."""

from __future__ import annotations

import zipfile

import jobs.jvm


def test_the_jar_holds_every_source_compiled_for_java_17() -> None:
    jar = jobs.jvm.jar()
    assert jar is not None and jar.is_file()
    with zipfile.ZipFile(jar) as archive:
        classes = {n for n in archive.namelist() if n.endswith(".class") and "$" not in n}
        assert classes == {f"jobs/jvm/{p.stem}.class" for p in jobs.jvm.sources()}
        for name in classes:
            header = archive.read(name)[:8]
            assert header[:4] == b"\xca\xfe\xba\xbe" and int.from_bytes(header[6:8]) == 61, name

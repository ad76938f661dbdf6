"""Last of the suite: every log, metrics file and tool output of everything this session
started (every proxy, replicator and s3tee tool run of every module before this one) is
swept for secrets (any secret of any credentials file the bed wrote), for the request
signatures this process computed, and for anything shaped like a signature. test_64 does
the same within its own module and checks that the sweep itself finds what it should."""

from lib import logscan


def test_no_secret_or_signature_anywhere_the_suite_wrote():
    swept = logscan.swept_files()
    leaks = logscan.find_leaks()
    assert leaks == [], leaks[:20]
    # the sweep saw something: a run of the whole suite leaves hundreds of files, a run of
    # this file alone none, which proves nothing but is not a leak either
    print(f"swept {len(swept)} files")

from ui.progress import RunProgress, duration, stage_words


def test_known_stages_read_as_plain_words_and_new_ones_as_words_too():
    assert stage_words("first_stage") == "Finding the liver"
    assert stage_words("infer") == "Outlining the liver and lesions"
    assert stage_words("lesions") == "Measuring"
    assert stage_words("finding_the_abdomen") == "Finding the abdomen"
    assert stage_words("outlining-lesions") == "Outlining lesions"
    assert stage_words("") == "Working"


def test_durations():
    assert duration(8.4) == "8 s" and duration(125) == "2 min 5 s" and duration(-3) == "0 s"


def test_progress_says_the_stage_the_time_so_far_and_what_is_left():
    now = [0.0]
    shown = []
    progress = RunProgress(lambda share, text: shown.append((share, text)), expected_s=20, clock=lambda: now[0])
    now[0] = 5
    progress("first_stage", 0.5)
    assert shown[-1] == (0.25, "Finding the liver… 5 s so far, about 15 s left")
    now[0] = 30
    progress("lesions", 0.0)
    assert shown[-1] == (0.99, "Measuring… 30 s so far, almost done")


def test_without_an_earlier_run_there_is_no_estimate():
    shown = []
    RunProgress(lambda share, text: shown.append((share, text)), expected_s=None, clock=lambda: 0.0)("infer", 0.4)
    assert shown == [(0.4, "Outlining the liver and lesions… 0 s so far (the first run on this server: no estimate yet)")]

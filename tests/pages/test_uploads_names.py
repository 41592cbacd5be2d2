from ui.uploads import name_stem


def test_download_names_are_safe():
    assert name_stem("LiTS case 117 (sample)") == "lits_case_117_sample"
    assert name_stem("Patient 7 [CT].nii.gz") == "patient_7_ct"
    assert name_stem("series.zip") == "series" and name_stem("lits117_ct.nii") == "lits117_ct"
    assert name_stem("((()))") == "scan"

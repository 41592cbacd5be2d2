"""After inference: cleaning the labels up and warning when the result is anatomically implausible."""

"""From a scan to labels: the card's preprocessing, sliding-window inference, the cascade's first stage, the segmenter."""

"""Streaming audio encoding: a header first, then audio chunk by chunk as segments finish.

`output.AudioOutput` is what the HTTP layer uses: the speed change (`stretch`), then the format's encoder
(`formats.ENCODERS`: wav and pcm here, mp3 and flac in `sndfile_encoders`, opus and aac in `av_encoders`).
"""

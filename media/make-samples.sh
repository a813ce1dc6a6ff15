#!/usr/bin/env bash
# Generates the sample media shipped in media/samples/ (committed; re-run only to change them).
# Needs ffmpeg with libx264 (Debian: apt-get install ffmpeg).
#
#   demo.mp4        moov at the end (ffmpeg's default), H.264 with B-frames + AAC
#   demo.ts         the same object as MPEG-TS (same stem: one object, two formats)
#   faststart.mp4   moov first (-movflags +faststart)
#   fragmented.mp4  fragmented MP4 (moof/mdat per keyframe)
#   long.mp4        60 s, for prefix/suffix and bench runs
#   hd.mp4          8 s of 1280x720 at ~3 Mbit/s: a realistic bitrate for egress benchmarks
#
# Not committed (large), made on demand by `segue-lab run` and `segue-lab bench|soak --samples`
# when a scenario names them, or by `media/make-samples.sh hd3 hd8 [DIR]`:
#   hd3.mp4         20 s of 1280x720 at 3.3 Mbit/s CBR (HD as users stream it)
#   hd8.mp4         20 s of 1920x1080 at 8 Mbit/s CBR (higher-bitrate HD)
# and the codec samples the tests make (`media/make-samples.sh opus hevc av1 DIR`), 6 s of
# 320x180 at 30 fps, a keyframe every second:
#   opus.mp4        H.264 + Opus (48 kHz stereo); opus.ts the same as MPEG-TS
#   hevc.mp4        HEVC (libx265, 2 B-frames, hvc1) + AAC; hevc.ts the same as MPEG-TS
#   av1.mp4         AV1 (libaom) + Opus
set -euo pipefail

# hd <name> <size> <video bitrate> <secs>: CBR H.264 (keyframe every second) + 128k AAC.
hd() {
  ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=size=$2:rate=30:duration=$4" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=$4" \
    -c:v libx264 -preset veryfast -profile:v high -pix_fmt yuv420p -b:v "$3" -minrate "$3" \
    -maxrate "$3" -bufsize "$3" -x264-params threads=1:nal-hrd=cbr -g 30 -keyint_min 30 \
    -sc_threshold 0 -bf 2 -c:a aac -b:a 128k -ac 2 -shortest -map_metadata -1 \
    -fflags +bitexact "$1.mp4"
}

# codec <file> <encoder options...>: 6 s of the test pattern and a tone, 48 kHz stereo.
codec() {
  local out=$1
  shift
  ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=size=320x180:rate=30:duration=6" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=6" \
    "$@" -ac 2 -shortest -map_metadata -1 -fflags +bitexact "$out"
}

if [ $# -gt 0 ]; then
  # On-demand samples: names, then optionally the directory to write them to.
  dir="$(dirname "$0")/samples"
  names=()
  for a in "$@"; do
    case "$a" in
      hd3|hd8|opus|hevc|av1) names+=("$a") ;;
      *) dir="$a" ;;
    esac
  done
  mkdir -p "$dir" && cd "$dir"
  for n in "${names[@]}"; do
    case "$n" in
      hd3) hd hd3 1280x720 3200k 20 ;;
      hd8) hd hd8 1920x1080 7800k 20 ;;
      opus) codec opus.mp4 -c:v libx264 -preset veryfast -pix_fmt yuv420p -b:v 150k -g 30 \
              -keyint_min 30 -sc_threshold 0 -bf 2 -x264-params threads=1 \
              -c:a libopus -b:a 64k
            ffmpeg -hide_banner -loglevel error -y -i opus.mp4 -c copy -f mpegts opus.ts ;;
      hevc) codec hevc.mp4 -c:v libx265 -preset ultrafast -pix_fmt yuv420p -b:v 150k -tag:v hvc1 \
              -x265-params "keyint=30:min-keyint=30:scenecut=0:bframes=2:pools=1:frame-threads=1:log-level=error" \
              -c:a aac -b:a 64k
            ffmpeg -hide_banner -loglevel error -y -i hevc.mp4 -c copy -f mpegts hevc.ts ;;
      av1) codec av1.mp4 -c:v libaom-av1 -cpu-used 8 -threads 1 -row-mt 0 -b:v 150k -g 30 \
              -keyint_min 30 -pix_fmt yuv420p -c:a libopus -b:a 64k ;;
    esac
  done
  exit 0
fi

cd "$(dirname "$0")/samples"

# 320x180 at 30 fps, a keyframe every second (so ~2 s segments hold 2 GOPs), 2 B-frames,
# 48 kHz stereo AAC. threads=1 keeps the output repeatable.
src() {
  local secs=$1
  echo -f lavfi -i "testsrc2=size=320x180:rate=30:duration=${secs}" \
       -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=${secs}"
}
enc=(-c:v libx264 -preset veryfast -profile:v high -pix_fmt yuv420p -b:v 150k -maxrate 200k
     -bufsize 300k -g 30 -keyint_min 30 -sc_threshold 0 -bf 2 -x264-params threads=1
     -c:a aac -b:a 64k -ac 2 -shortest -map_metadata -1 -fflags +bitexact)

ffmpeg -hide_banner -loglevel error -y $(src 12) "${enc[@]}" demo.mp4
ffmpeg -hide_banner -loglevel error -y -i demo.mp4 -c copy -f mpegts demo.ts
ffmpeg -hide_banner -loglevel error -y -i demo.mp4 -c copy -movflags +faststart faststart.mp4
ffmpeg -hide_banner -loglevel error -y -i demo.mp4 -c copy \
  -movflags frag_keyframe+empty_moov+default_base_moof fragmented.mp4
ffmpeg -hide_banner -loglevel error -y $(src 60) "${enc[@]}" long.mp4
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=1280x720:rate=30:duration=8" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=8" \
  -c:v libx264 -preset veryfast -profile:v high -pix_fmt yuv420p -b:v 3M -minrate 3M -maxrate 3M \
  -bufsize 3M -x264-params threads=1:nal-hrd=cbr -g 30 -keyint_min 30 -sc_threshold 0 -bf 2 \
  -c:a aac -b:a 128k -ac 2 -shortest -map_metadata -1 -fflags +bitexact hd.mp4
ls -l

/* fastretro's libretro frontend: the callbacks a core calls, in C (ext/libretro.pyx drives it).
 *
 * libretro's callbacks carry no user-data pointer: a core calls the functions it was given,
 * whichever emulator they serve. Each emulator loads its own copy of the core (its own
 * globals, its own callback slots), and the frontend sets fr_current to that emulator's
 * fr_core before every call into its copy. fr_current is thread-local, so that emulators
 * driven by different threads (a pool's thread workers) do not see each other's; one emulator
 * must be driven by one thread at a time.
 *
 * Every answer follows stable-retro's own frontend (src/emulator.cpp, Emulator::cb*), so that a
 * core behaves here as it does under stable-retro: the same environment answers (pixel format,
 * system directory, the three core variables stable-retro sets, nothing else), the last
 * picture kept where the core drew it, the held buttons of player 1, the sound dropped.
 */
#ifndef FASTRETRO_LIBRETRO_FRONTEND_H
#define FASTRETRO_LIBRETRO_FRONTEND_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The part of libretro.h (API version 1) this frontend uses, as stable-retro's src/libretro.h
 * declares it. */
#define RETRO_ENVIRONMENT_EXPERIMENTAL 0x10000
#define RETRO_ENVIRONMENT_GET_CAN_DUPE 3
#define RETRO_ENVIRONMENT_GET_SYSTEM_DIRECTORY 9
#define RETRO_ENVIRONMENT_SET_PIXEL_FORMAT 10
#define RETRO_ENVIRONMENT_GET_VARIABLE 15
#define RETRO_ENVIRONMENT_GET_LOG_INTERFACE 27
#define RETRO_ENVIRONMENT_SET_MEMORY_MAPS (36 | RETRO_ENVIRONMENT_EXPERIMENTAL)
#define RETRO_MEMORY_SYSTEM_RAM 2
#define RETRO_PIXEL_FORMAT_0RGB1555 0
#define RETRO_PIXEL_FORMAT_XRGB8888 1
#define RETRO_PIXEL_FORMAT_RGB565 2

struct retro_game_info {
    const char *path;
    const void *data;
    size_t size;
    const char *meta;
};

struct retro_system_info {
    const char *library_name;
    const char *library_version;
    const char *valid_extensions;
    bool need_fullpath;
    bool block_extract;
};

struct retro_game_geometry {
    unsigned base_width;
    unsigned base_height;
    unsigned max_width;
    unsigned max_height;
    float aspect_ratio;
};

struct retro_system_timing {
    double fps;
    double sample_rate;
};

struct retro_system_av_info {
    struct retro_game_geometry geometry;
    struct retro_system_timing timing;
};

struct retro_variable {
    const char *key;
    const char *value;
};

typedef void (*retro_log_printf_t)(int level, const char *fmt, ...);

struct retro_log_callback {
    retro_log_printf_t log;
};

typedef bool (*retro_environment_t)(unsigned cmd, void *data);
typedef void (*retro_video_refresh_t)(const void *data, unsigned width, unsigned height,
                                      size_t pitch);
typedef void (*retro_audio_sample_t)(int16_t left, int16_t right);
typedef size_t (*retro_audio_sample_batch_t)(const int16_t *data, size_t frames);
typedef void (*retro_input_poll_t)(void);
typedef int16_t (*retro_input_state_t)(unsigned port, unsigned device, unsigned index,
                                       unsigned id);

/* A core's entry points, as dlsym finds them in one copy. */
typedef struct fr_api {
    void (*init)(void);
    void (*deinit)(void);
    void (*get_system_info)(struct retro_system_info *info);
    void (*get_system_av_info)(struct retro_system_av_info *info);
    void (*run)(void);
    size_t (*serialize_size)(void);
    bool (*serialize)(void *data, size_t size);
    bool (*unserialize)(const void *data, size_t size);
    bool (*load_game)(const struct retro_game_info *game);
    void (*unload_game)(void);
    void *(*get_memory_data)(unsigned id);
    size_t (*get_memory_size)(unsigned id);
    void (*set_environment)(retro_environment_t);
    void (*set_video_refresh)(retro_video_refresh_t);
    void (*set_audio_sample)(retro_audio_sample_t);
    void (*set_audio_sample_batch)(retro_audio_sample_batch_t);
    void (*set_input_poll)(retro_input_poll_t);
    void (*set_input_state)(retro_input_state_t);
} fr_api;

/* The entry points' names, in fr_api's order (ext/libretro.pyx looks each up). */
static const char *const FR_API_NAMES[] = {
    "retro_init", "retro_deinit", "retro_get_system_info", "retro_get_system_av_info",
    "retro_run", "retro_serialize_size", "retro_serialize", "retro_unserialize",
    "retro_load_game", "retro_unload_game", "retro_get_memory_data", "retro_get_memory_size",
    "retro_set_environment", "retro_set_video_refresh", "retro_set_audio_sample",
    "retro_set_audio_sample_batch", "retro_set_input_poll", "retro_set_input_state",
};
#define FR_API_COUNT (sizeof(FR_API_NAMES) / sizeof(FR_API_NAMES[0]))

typedef void (*fr_fm_update_fn)(int *buffer, int length);

/* One emulator: what the callbacks read and write. */
typedef struct fr_core {
    fr_api api;
    const char *system_dir;  /* owned by the Python object (ext/libretro.pyx) */
    const void *frame;       /* the last picture the core gave, in its own memory */
    size_t pitch;            /* bytes between its rows */
    int depth;               /* bits per pixel: 15 (libretro's default), 16 or 32 */
    unsigned buttons;        /* player 1's held buttons: bit id is libretro's button id */
    /* The FM chip without its sound (fastretro/runtime/headless.py's SilentFM), per copy. */
    fr_fm_update_fn fm_real;
    const int *fm_mode;
    long long fm_silenced, fm_forwarded;
} fr_core;

static __thread fr_core *fr_current = NULL;

/* The three core variables stable-retro answers (src/emulator.cpp s_envVariables); a core
 * takes its own default for every other. */
static const char *const FR_VARIABLES[][2] = {
    {"genesis_plus_gx_bram", "per game"},
    {"genesis_plus_gx_render", "single field"},
    {"genesis_plus_gx_blargg_ntsc_filter", "disabled"},
};

static void fr_log(int level, const char *fmt, ...) {
    /* stable-retro drops the cores' log lines (its cbLog is compiled out) */
    (void)level;
    (void)fmt;
}

static bool fr_environment(unsigned cmd, void *data) {
    fr_core *core = fr_current;
    size_t i;
    switch (cmd) {
    case RETRO_ENVIRONMENT_SET_PIXEL_FORMAT:
        switch (*(const int *)data) {
        case RETRO_PIXEL_FORMAT_XRGB8888: core->depth = 32; break;
        case RETRO_PIXEL_FORMAT_RGB565: core->depth = 16; break;
        case RETRO_PIXEL_FORMAT_0RGB1555: core->depth = 15; break;
        default: core->depth = 0; break;
        }
        return true;
    case RETRO_ENVIRONMENT_GET_VARIABLE: {
        struct retro_variable *var = (struct retro_variable *)data;
        for (i = 0; i < sizeof(FR_VARIABLES) / sizeof(FR_VARIABLES[0]); i++) {
            if (var->key != NULL && strcmp(var->key, FR_VARIABLES[i][0]) == 0) {
                var->value = FR_VARIABLES[i][1];
                return true;
            }
        }
        return false;
    }
    case RETRO_ENVIRONMENT_GET_SYSTEM_DIRECTORY:
        *(const char **)data = core->system_dir;
        return true;
    case RETRO_ENVIRONMENT_GET_CAN_DUPE:
        *(bool *)data = true;
        return true;
    case RETRO_ENVIRONMENT_SET_MEMORY_MAPS:
        /* stable-retro maps RAM from these descriptors; the Genesis core's one RAM descriptor
         * is its system RAM, which the frontend reads through retro_get_memory_data. */
        return true;
    case RETRO_ENVIRONMENT_GET_LOG_INTERFACE:
        ((struct retro_log_callback *)data)->log = fr_log;
        return true;
    default:
        return false;
    }
}

static void fr_video_refresh(const void *data, unsigned width, unsigned height, size_t pitch) {
    /* As stable-retro: keep where the picture is (the core's own frame buffer, private to this
     * copy) and convert it when asked, instead of copying every frame; NULL repeats the last. */
    (void)width;
    (void)height;
    if (data != NULL) {
        fr_current->frame = data;
    }
    if (pitch != 0) {
        fr_current->pitch = pitch;
    }
}

static void fr_audio_sample(int16_t left, int16_t right) {
    (void)left;
    (void)right;
}

static size_t fr_audio_sample_batch(const int16_t *data, size_t frames) {
    (void)data;
    return frames;
}

static void fr_input_poll(void) {}

static int16_t fr_input_state(unsigned port, unsigned device, unsigned index, unsigned id) {
    /* stable-retro answers m_buttonMask[port][id] whatever the device: a one-player env holds
     * player 1's buttons and none of player 2's. */
    (void)device;
    (void)index;
    if (port != 0 || id >= 16) {
        return 0;
    }
    return (int16_t)((fr_current->buttons >> id) & 1);
}

/* Hand the callbacks to a freshly loaded copy and initialise it (stable-retro's order). */
static void fr_connect(fr_core *core) {
    fr_current = core;
    core->api.set_environment(fr_environment);
    core->api.set_video_refresh(fr_video_refresh);
    core->api.set_audio_sample(fr_audio_sample);
    core->api.set_audio_sample_batch(fr_audio_sample_batch);
    core->api.set_input_poll(fr_input_poll);
    core->api.set_input_state(fr_input_state);
    core->api.init();
}

static inline void fr_enter(fr_core *core) { fr_current = core; }

/* RGB565 to RGB888 as stable-retro's get_screen converts it (src/imageops.cpp image565To888):
 * no bit replication, the low bits stay zero. */
static inline void fr_rgb565_to_888(const uint16_t *in, uint8_t *out, size_t count) {
    size_t x;
    for (x = 0; x < count; x++) {
        uint16_t rgb = in[x];
        out[0] = (uint8_t)((rgb & 0xF800) >> 8);
        out[1] = (uint8_t)((rgb & 0x07E0) >> 3);
        out[2] = (uint8_t)((rgb & 0x001F) << 3);
        out += 3;
    }
}

#if defined(__x86_64__) || defined(__i386__)
#include <tmmintrin.h>
#define FR_HAVE_SSSE3_PATH 1

/* The same conversion, 8 pixels at a time, as stable-retro converts with SSSE3 where it can:
 * the scalar loop alone made screen() several times slower than stable-retro's. Each pixel
 * becomes R, G, B, 0 in 32 bits, and a shuffle packs 4 of them into 12 bytes; the 16-byte
 * stores overlap by 4, so each row's last 8 to 15 pixels go through the scalar loop, which
 * keeps every store inside the row. */
__attribute__((target("ssse3"))) static void fr_rgb565_to_888_ssse3(
    const uint16_t *in, uint8_t *out, size_t count) {
    const __m128i red = _mm_set1_epi16((short)0xF800), green = _mm_set1_epi16(0x07E0);
    const __m128i blue = _mm_set1_epi16(0x001F);
    const __m128i pack = _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
    size_t x = 0;
    for (; x + 16 <= count; x += 8) {
        __m128i p = _mm_loadu_si128((const __m128i *)(in + x));
        __m128i r = _mm_srli_epi16(_mm_and_si128(p, red), 8);
        __m128i g = _mm_srli_epi16(_mm_and_si128(p, green), 3);
        __m128i b = _mm_slli_epi16(_mm_and_si128(p, blue), 3);
        __m128i rg = _mm_or_si128(r, _mm_slli_epi16(g, 8));
        _mm_storeu_si128((__m128i *)out, _mm_shuffle_epi8(_mm_unpacklo_epi16(rg, b), pack));
        _mm_storeu_si128((__m128i *)(out + 12),
                         _mm_shuffle_epi8(_mm_unpackhi_epi16(rg, b), pack));
        out += 24;
    }
    fr_rgb565_to_888(in + x, out, count - x);
}
#endif

/* Rows of RGB565 pixels (pitch bytes apart) into RGB888 (height x width x 3, packed); simd: the
 * SSSE3 loop where the CPU has it, else the scalar one. */
static void fr_rgb565_rows_into(const void *pixels, size_t pitch, uint8_t *out, size_t width,
                                size_t height, int simd) {
    size_t y;
#ifdef FR_HAVE_SSSE3_PATH
    simd = simd && __builtin_cpu_supports("ssse3");
#else
    simd = 0;
#endif
    for (y = 0; y < height; y++) {
        const uint16_t *row = (const uint16_t *)((const uint8_t *)pixels + y * pitch);
#ifdef FR_HAVE_SSSE3_PATH
        if (simd) {
            fr_rgb565_to_888_ssse3(row, out + y * width * 3, width);
            continue;
        }
#endif
        fr_rgb565_to_888(row, out + y * width * 3, width);
    }
}

/* The last picture as RGB888 into out (height rows of width pixels). Other pixel formats than
 * RGB565 are refused (-2): stable-retro's XRGB8888 conversion orders the channels differently
 * in its SSSE3 and scalar paths, so there is no one answer to match. */
static int fr_screen_rgb_into(const fr_core *core, uint8_t *out, size_t width, size_t height) {
    if (core->frame == NULL) {
        return -1;
    }
    if (core->depth != 16) {
        return -2;
    }
    fr_rgb565_rows_into(core->frame, core->pitch, out, width, height, 1);
    return 0;
}

/* The FM chip's update for the copy running now: the real chip while one of its timers runs,
 * else silence (ext/worker_loop.pyx's _fm_update_unless_timers_stopped explains why the game
 * cannot tell); the copy's own chip and mode register come from fr_current. */
static void fr_fm_update(int *buffer, int length) {
    fr_core *core = fr_current;
    if (core->fm_mode[0] & 0x03) {
        core->fm_forwarded += 1;
        core->fm_real(buffer, length);
    } else {
        core->fm_silenced += 1;
        memset(buffer, 0, 2 * (size_t)length * sizeof(int));
    }
}

#endif

# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""A minimal libretro frontend whose every emulator runs its own private copy of the core.

stable-retro allows one emulator per process because a libretro core keeps its state in the
globals of its shared library, which a process loads once. :class:`Core` copies the core's file
into an anonymous memory file (``memfd_create``) and ``dlopen``\\ s that copy by its
``/proc/self/fd`` path, ``RTLD_LOCAL``: the loader sees a new file, so each :class:`Core` gets
its own code, its own globals and its own callback slots, and a process may hold several.

The callbacks the cores call are C (ext/libretro_frontend.h): libretro gives them no pointer
to their emulator, so every method here that calls into a copy first makes its ``fr_core`` the
thread's current one. One :class:`Core` must be driven by one thread at a time; different
threads may drive different cores.

fastretro/runtime/backends/libretro.py puts a :class:`Core` behind the emulator seam.
"""

import os

import numpy as np
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint64_t, uintptr_t
from libc.string cimport memset

cdef extern from "<dlfcn.h>" nogil:
    void *dlopen(const char *filename, int flags)
    void *dlsym(void *handle, const char *symbol)
    int dlclose(void *handle)
    char *dlerror()
    int dlinfo(void *handle, int request, void *info)
    int RTLD_NOW
    int RTLD_LOCAL
    int RTLD_DI_LINKMAP

cdef extern from "<fcntl.h>" nogil:
    int fallocate(int fd, int mode, long offset, long length)

cdef extern from "<linux/falloc.h>" nogil:
    int FALLOC_FL_PUNCH_HOLE
    int FALLOC_FL_KEEP_SIZE

cdef extern from "<link.h>" nogil:
    struct link_map:
        uintptr_t l_addr

cdef extern from "libretro_frontend.h" nogil:
    struct retro_game_info:
        const char *path
        const void *data
        size_t size
        const char *meta

    struct retro_system_info:
        const char *library_name
        const char *library_version
        const char *valid_extensions
        bint need_fullpath
        bint block_extract

    struct retro_game_geometry:
        unsigned base_width
        unsigned base_height

    struct retro_system_timing:
        double fps
        double sample_rate

    struct retro_system_av_info:
        retro_game_geometry geometry
        retro_system_timing timing

    ctypedef void (*fr_fm_update_fn)(int *buffer, int length) noexcept nogil

    ctypedef struct fr_api:
        void (*deinit)() noexcept nogil
        void (*get_system_info)(retro_system_info *info) noexcept nogil
        void (*get_system_av_info)(retro_system_av_info *info) noexcept nogil
        void (*run)() noexcept nogil
        size_t (*serialize_size)() noexcept nogil
        bint (*serialize)(void *data, size_t size) noexcept nogil
        bint (*unserialize)(const void *data, size_t size) noexcept nogil
        bint (*load_game)(const retro_game_info *game) noexcept nogil
        void (*unload_game)() noexcept nogil
        void *(*get_memory_data)(unsigned id) noexcept nogil
        size_t (*get_memory_size)(unsigned id) noexcept nogil

    ctypedef struct fr_core:
        fr_api api
        const char *system_dir
        const void *frame
        size_t pitch
        int depth
        unsigned buttons
        fr_fm_update_fn fm_real
        const int *fm_mode
        long long fm_silenced
        long long fm_forwarded

    const char *FR_API_NAMES[]
    size_t FR_API_COUNT
    int RETRO_MEMORY_SYSTEM_RAM
    void fr_connect(fr_core *core)
    void fr_enter(fr_core *core)
    int fr_screen_rgb_into(const fr_core *core, uint8_t *out, size_t width, size_t height)
    void fr_rgb565_rows_into(const void *pixels, size_t pitch, uint8_t *out, size_t width,
                             size_t height, int simd)
    void fr_fm_update(int *buffer, int length)

# Genesis Plus GX's frame without its picture (fastretro/runtime/headless.py's HeadlessFrame).
ctypedef void (*frame_gen_fn)(int do_skip) noexcept nogil
ctypedef int (*audio_update_fn)(short *buffer) noexcept nogil


class CoreError(RuntimeError):
    """A core that could not be loaded, or that refused a game or a state."""


cdef class Core:
    """One emulator: a private copy of a libretro core, with its game once loaded.

    Args:
        core_path: the core's ``*_libretro.so``.
        system_dir: what the core is told its system (BIOS) directory is; stable-retro tells
            its cores directory.

    Raises:
        CoreError: the copy could not be made or loaded, or lacks a libretro entry point.
    """

    cdef fr_core core
    cdef void *handle
    cdef int fd
    cdef bytes _system_dir
    cdef readonly str library_name
    cdef readonly object base_address
    cdef readonly int width, height
    cdef bint loaded
    cdef frame_gen_fn frame_gen
    cdef audio_update_fn audio_update
    cdef short[::1] scratch

    def __cinit__(self):
        memset(&self.core, 0, sizeof(fr_core))
        self.handle = NULL
        self.fd = -1
        self.loaded = False
        self.frame_gen = NULL
        self.audio_update = NULL

    def __init__(self, str core_path, str system_dir):
        self._system_dir = os.fsencode(system_dir)
        self.core.system_dir = PyBytes_AS_STRING(self._system_dir)
        self.core.depth = 15  # libretro's default pixel format, as stable-retro assumes
        self.fd = os.memfd_create(os.path.basename(core_path), os.MFD_CLOEXEC)
        self.handle = _load_private_copy(core_path, self.fd)
        cdef void **slots = <void **>&self.core.api
        cdef size_t i
        cdef void *symbol
        for i in range(FR_API_COUNT):
            symbol = dlsym(self.handle, FR_API_NAMES[i])
            if symbol == NULL:
                name = FR_API_NAMES[i].decode()
                dlclose(self.handle)  # never initialised: nothing to deinit
                self.handle = NULL
                self._close()
                raise CoreError(f"{core_path} has no {name}: not a libretro core")
            slots[i] = symbol
        cdef link_map *lm = NULL
        # Where this copy is loaded: a symbol's address is its value in the file plus this
        # (0 where the loader does not say; nothing then checks out against it).
        if dlinfo(self.handle, RTLD_DI_LINKMAP, &lm) == 0 and lm != NULL:
            self.base_address = lm.l_addr
        else:
            self.base_address = 0
        cdef retro_system_info info
        fr_connect(&self.core)
        self.core.api.get_system_info(&info)
        self.library_name = info.library_name.decode(errors="replace")

    def symbol(self, str name):
        """The address of the exported symbol ``name`` in this copy, or ``None``."""
        if self.handle == NULL:
            return None
        cdef void *address = dlsym(self.handle, os.fsencode(name))
        return None if address == NULL else <uintptr_t>address

    def release_file_ranges(self, ranges):
        """Free the pages of the copy's memory file in ``ranges`` (``(start, end)`` offsets).

        For what only the loader read (the relocations) or what no mapping reads any more (a
        section every page of which was copied on write, the symbol table): the memory file
        holds the whole core while the copy is loaded, and freed ranges read as zeros after.
        Offsets are rounded inwards to whole pages. Returns the bytes freed (0 where the kernel
        does not punch holes).
        """
        cdef long page = os.sysconf("SC_PAGE_SIZE"), start, end, freed = 0
        for lo, hi in ranges:
            start = -(-lo // page) * page
            end = hi // page * page
            if end > start and self.fd >= 0:
                if fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, start,
                             end - start) == 0:
                    freed += end - start
        return freed

    def file_bytes(self):
        """Bytes the copy's memory file holds now (its allocated blocks)."""
        return os.fstat(self.fd).st_blocks * 512 if self.fd >= 0 else 0

    def load_game(self, str rom_path, int width, int height):
        """Load the ROM at ``rom_path`` and run one frame, as stable-retro's ``RetroEmulator``.

        ``width`` and ``height`` are the picture's size as stable-retro's ``get_screen`` takes
        it (its ``fixScreenSize``); 0 takes the core's own geometry.

        Raises:
            CoreError: the core refused the ROM.
        """
        if self.loaded:
            raise CoreError("a game is loaded already")
        path = os.fsencode(rom_path)
        with open(rom_path, "rb") as f:
            data = f.read()
        cdef retro_game_info game
        game.path = path
        game.data = PyBytes_AS_STRING(data)
        game.size = len(data)
        game.meta = NULL
        fr_enter(&self.core)
        if not self.core.api.load_game(&game):
            raise CoreError(f"{self.library_name} refused the ROM {rom_path}")
        self.loaded = True
        cdef retro_system_av_info av
        self.core.api.get_system_av_info(&av)
        self.width = width or av.geometry.base_width
        self.height = height or av.geometry.base_height
        # stable-retro's RetroEmulator runs a frame as soon as the ROM is loaded.
        self.run()

    def press(self, unsigned buttons):
        """Hold the buttons of ``buttons`` (bit ``b``: libretro's button id ``b``) from now on."""
        self.core.buttons = buttons

    def run(self):
        """Run one frame (``retro_run``).

        Raises:
            CoreError: no game is loaded (or the core was closed).
        """
        if not self.loaded:
            raise CoreError("no game is loaded")
        with nogil:
            fr_enter(&self.core)
            self.core.api.run()

    def use_undrawn_frame(self, size_t frame_gen, size_t audio_update, int scratch_values):
        """Make :meth:`run_undrawn` call ``frame_gen(1)`` then ``audio_update(scratch)``.

        Args:
            frame_gen: the address, in this copy, of Genesis Plus GX's ``system_frame_gen``.
            audio_update: the address, in this copy, of its ``audio_update``.
            scratch_values: int16 values of the scratch buffer the samples go to.
        """
        self.scratch = np.zeros(scratch_values, np.int16)
        self.frame_gen = <frame_gen_fn>frame_gen
        self.audio_update = <audio_update_fn>audio_update

    def run_undrawn(self):
        """Run one frame without its picture (:meth:`use_undrawn_frame` said how)."""
        if self.frame_gen == NULL or not self.loaded:
            raise CoreError("no game is loaded, or use_undrawn_frame was not called")
        with nogil:
            # The frame polls the buttons, so the callbacks need this copy's state.
            fr_enter(&self.core)
            self.frame_gen(1)
            self.audio_update(&self.scratch[0])

    def silence_fm(self, size_t slot, size_t update, size_t mode):
        """Point this copy's ``YM_Update`` at the silent FM update (libretro_frontend.h).

        Args:
            slot: the address of the copy's ``YM_Update`` function pointer.
            update: the address of the copy's ``YM2612Update`` (the real chip).
            mode: the address of the chip's mode register (timers run while bit 0 or 1 is set).
        """
        self.core.fm_real = <fr_fm_update_fn>update
        self.core.fm_mode = <const int *>mode
        (<fr_fm_update_fn *>slot)[0] = fr_fm_update

    def fm_calls(self):
        """``(silenced, forwarded)``: this copy's FM chip updates since :meth:`silence_fm`."""
        return self.core.fm_silenced, self.core.fm_forwarded

    def screen_into(self, out):
        """Write the last picture into ``out`` (uint8 ``(height, width, 3)``, C-contiguous).

        Returns ``out``.

        Raises:
            CoreError: no picture yet, or a pixel format other than RGB565.
        """
        cdef uint8_t[:, :, ::1] pixels = out
        if pixels.shape[0] != self.height or pixels.shape[1] != self.width or pixels.shape[2] != 3:
            raise ValueError(
                f"Expected out of shape ({self.height}, {self.width}, 3), got "
                f"{(pixels.shape[0], pixels.shape[1], pixels.shape[2])}"
            )
        cdef int rc = fr_screen_rgb_into(&self.core, &pixels[0, 0, 0], self.width, self.height)
        if rc == -1:
            raise CoreError("the core has drawn no picture yet")
        if rc == -2:
            raise CoreError(
                f"{self.library_name} draws in a pixel format of {self.core.depth} bits; only "
                "RGB565 is converted"
            )
        return out

    def system_ram(self):
        """The core's system RAM as a uint8 array that aliases the core's memory.

        Valid until :meth:`close`; ``None`` where the core has none.
        """
        if not self.loaded:
            raise CoreError("no game is loaded")
        fr_enter(&self.core)
        cdef size_t size = self.core.api.get_memory_size(RETRO_MEMORY_SYSTEM_RAM)
        cdef uint8_t *data = <uint8_t *>self.core.api.get_memory_data(RETRO_MEMORY_SYSTEM_RAM)
        if size == 0 or data == NULL:
            return None
        return np.asarray(<uint8_t[:size]>data)

    def serialize(self):
        """The core's whole state (``retro_serialize``), as bytes.

        Raises:
            CoreError: no game is loaded, or the core failed to serialize.
        """
        if not self.loaded:
            raise CoreError("no game is loaded")
        fr_enter(&self.core)
        cdef size_t size = self.core.api.serialize_size()
        state = PyBytes_FromStringAndSize(NULL, size)
        if not self.core.api.serialize(PyBytes_AS_STRING(state), size):
            raise CoreError(f"{self.library_name} failed to serialize its state")
        return state

    def unserialize(self, const uint8_t[::1] state):
        """Go back to ``state`` (``retro_unserialize``); whether the core accepted it."""
        if not self.loaded:
            raise CoreError("no game is loaded")
        fr_enter(&self.core)
        if state.shape[0] == 0:
            return False
        return bool(self.core.api.unserialize(&state[0], state.shape[0]))

    def close(self):
        """Unload the game and the copy of the core (its memory goes with it)."""
        self._close()

    cdef void _close(self) noexcept:
        if self.handle != NULL:
            fr_enter(&self.core)
            if self.loaded:
                self.core.api.unload_game()
                self.loaded = False
            self.core.api.deinit()
            dlclose(self.handle)
            self.handle = NULL
            self.frame_gen = NULL
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __dealloc__(self):
        self._close()


def rgb565_to_rgb_into(const uint16_t[:, ::1] pixels, out, bint simd=True):
    """Convert RGB565 ``pixels`` (uint16 ``(H, W)``) into ``out`` (uint8 ``(H, W, 3)``).

    The conversion :meth:`Core.screen_into` applies, as stable-retro's ``get_screen`` does:
    ``R = (p & 0xF800) >> 8``, ``G = (p & 0x07E0) >> 3``, ``B = (p & 0x1F) << 3``. ``simd``:
    the SSSE3 loop where the CPU has one (else the scalar loop). Returns ``out``.
    """
    cdef uint8_t[:, :, ::1] rgb = out
    cdef Py_ssize_t h = pixels.shape[0], w = pixels.shape[1]
    if rgb.shape[0] != h or rgb.shape[1] != w or rgb.shape[2] != 3:
        raise ValueError(
            f"Expected out of shape ({h}, {w}, 3), got {(rgb.shape[0], rgb.shape[1], rgb.shape[2])}"
        )
    if h and w:
        fr_rgb565_rows_into(&pixels[0, 0], pixels.strides[0], &rgb[0, 0, 0], w, h, simd)
    return out


def decode_plan_into(
    const uint8_t[::1] ram, const uint64_t[:, ::1] plan, const uint64_t[:, ::1] digits,
    int64_t[::1] out
):
    """Decode a :class:`~fastretro.runtime.backends.ale_ram.RamDecoder` plan from ``ram``.

    ``decode_ram_into``'s loop, compiled ahead of time: a worker that runs no other numba
    kernel (RGB observations) would otherwise start LLVM to load that one, and hold its memory
    (bench/bench_libretro.py's rgb-fs1 pools). ``digits`` is ``RamDecoder.digits``; the plan's
    columns are ale_ram's (tests/runtime/test_libretro.py checks both loops agree). No checks
    beyond the shapes: every index in the plan must lie in ``ram``.
    """
    cdef Py_ssize_t v, k, n = plan.shape[0]
    cdef uint64_t datum, table
    if plan.shape[1] != 20 or out.shape[0] != n or digits.shape[1] != 256:
        raise ValueError("Expected a plan of 20 columns, one output a variable, 256-byte tables")
    with nogil:
        for v in range(n):
            table = plan[v, 16]
            datum = 0
            for k in range(8):
                datum += digits[table, ram[plan[v, k]]] * plan[v, 8 + k]
            if datum & plan[v, 17]:
                datum |= plan[v, 18]
            out[v] = <int64_t>(datum & plan[v, 19])
    return out


cdef void *_load_private_copy(str core_path, int fd) except NULL:
    """dlopen a copy of ``core_path`` that no other :class:`Core` shares, written into ``fd``.

    The loader knows a library by its path before it looks at the file: ``fd`` must stay open
    while the copy is loaded, or the next copy, given the same descriptor number, would be
    taken for this one.
    """
    cdef void *handle
    cdef char *error
    # The kernel copies the file (no copy of it in this process's heap).
    with open(core_path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        while offset < size:
            sent = os.sendfile(fd, f.fileno(), offset, size - offset)
            if sent == 0:
                raise CoreError(f"{core_path} ended before its {size} bytes")
            offset += sent
    handle = dlopen(os.fsencode(f"/proc/self/fd/{fd}"), RTLD_NOW | RTLD_LOCAL)
    if handle == NULL:
        error = dlerror()
        raise CoreError(
            f"Cannot load a private copy of {core_path}: "
            + (error.decode(errors="replace") if error != NULL else "dlopen failed")
        )
    return handle

package inference

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The few Vulkan structures the probe needs, declared here so that building
// eyeflow needs no Vulkan headers and running it no Vulkan library: the
// loader is opened with dlopen, and its absence is a finding, not a crash.
// Layouts follow vulkan_core.h (every enum is 32 bits, handles are pointers).
#define EF_VK_API(major, minor) (((uint32_t)(major) << 22) | ((uint32_t)(minor) << 12))
#define EF_VK_STYPE_APPLICATION_INFO 0
#define EF_VK_STYPE_INSTANCE_CREATE_INFO 1
#define EF_VK_STYPE_PHYSICAL_DEVICE_PROPERTIES_2 1000059001
#define EF_VK_STYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES 1000196000
#define EF_VK_MAX_DEVICES 16

typedef struct {
	uint32_t sType;
	const void *pNext;
	const char *pApplicationName;
	uint32_t applicationVersion;
	const char *pEngineName;
	uint32_t engineVersion;
	uint32_t apiVersion;
} ef_vk_app_info;

typedef struct {
	uint32_t sType;
	const void *pNext;
	uint32_t flags;
	const ef_vk_app_info *pApplicationInfo;
	uint32_t enabledLayerCount;
	const char *const *ppEnabledLayerNames;
	uint32_t enabledExtensionCount;
	const char *const *ppEnabledExtensionNames;
} ef_vk_instance_info;

// VkPhysicalDeviceProperties: the leading fields, then room for the limits
// and sparse properties (824 bytes in all on 64-bit hosts) that are not read.
typedef struct {
	uint32_t apiVersion;
	uint32_t driverVersion;
	uint32_t vendorID;
	uint32_t deviceID;
	int32_t deviceType;
	char deviceName[256];
	uint8_t pipelineCacheUUID[16];
	uint64_t rest[192];
} ef_vk_props;

typedef struct {
	uint32_t sType;
	void *pNext;
	ef_vk_props properties;
} ef_vk_props2;

typedef struct {
	uint32_t sType;
	void *pNext;
	uint32_t driverID;
	char driverName[256];
	char driverInfo[256];
	uint8_t conformanceVersion[4];
} ef_vk_driver_props;

typedef void *(*ef_pfn_gipa)(void *instance, const char *name);
typedef int32_t (*ef_pfn_enum_version)(uint32_t *version);
typedef int32_t (*ef_pfn_create)(const ef_vk_instance_info *info, const void *alloc, void **instance);
typedef void (*ef_pfn_destroy)(void *instance, const void *alloc);
typedef int32_t (*ef_pfn_enum_devices)(void *instance, uint32_t *count, void **devices);
typedef void (*ef_pfn_props)(void *device, ef_vk_props *props);
typedef void (*ef_pfn_props2)(void *device, ef_vk_props2 *props);
typedef int32_t (*ef_pfn_negotiate)(uint32_t *version);

typedef struct {
	uint32_t apiVersion, driverVersion, vendorID, deviceID, driverID;
	int32_t type;
	char name[256];
	char driverName[256];
	char driverInfo[256];
} ef_vk_dev;

typedef struct {
	int stage;        // 0 ok; 1 no loader; 2 loader without vkGetInstanceProcAddr; 3 vkCreateInstance failed; 4 enumeration failed
	int32_t result;   // VkResult of the failed call
	uint32_t loaderVersion;
	int count;
	ef_vk_dev devices[EF_VK_MAX_DEVICES];
	char err[512];
} ef_vk_probe_result;

// ef_vk_probe lists the physical devices the Vulkan loader offers, as Dawn's
// Vulkan backend would see them. The loader stays loaded (Dawn opens it too,
// and some drivers do not like being unloaded).
static void ef_vk_probe(ef_vk_probe_result *r) {
	memset(r, 0, sizeof(*r));
	void *lib = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		const char *e = dlerror();
		snprintf(r->err, sizeof(r->err), "%s", e ? e : "dlopen libvulkan.so.1 failed");
		r->stage = 1;
		return;
	}
	ef_pfn_gipa gipa = (ef_pfn_gipa)dlsym(lib, "vkGetInstanceProcAddr");
	if (!gipa) {
		r->stage = 2;
		return;
	}
	uint32_t version = EF_VK_API(1, 0);
	ef_pfn_enum_version ev = (ef_pfn_enum_version)gipa(NULL, "vkEnumerateInstanceVersion");
	if (ev) ev(&version);
	r->loaderVersion = version;
	ef_pfn_create create = (ef_pfn_create)gipa(NULL, "vkCreateInstance");
	if (!create) {
		r->stage = 2;
		return;
	}
	uint32_t api = version >= EF_VK_API(1, 1) ? EF_VK_API(1, 1) : EF_VK_API(1, 0);
	ef_vk_app_info app = {EF_VK_STYPE_APPLICATION_INFO, NULL, "eyeflow", 1, "eyeflow", 1, api};
	ef_vk_instance_info ci = {EF_VK_STYPE_INSTANCE_CREATE_INFO, NULL, 0, &app, 0, NULL, 0, NULL};
	void *inst = NULL;
	int32_t res = create(&ci, NULL, &inst);
	if (res != 0) {
		r->stage = 3;
		r->result = res;
		return;
	}
	ef_pfn_destroy destroy = (ef_pfn_destroy)gipa(inst, "vkDestroyInstance");
	ef_pfn_enum_devices enumerate = (ef_pfn_enum_devices)gipa(inst, "vkEnumeratePhysicalDevices");
	ef_pfn_props props = (ef_pfn_props)gipa(inst, "vkGetPhysicalDeviceProperties");
	ef_pfn_props2 props2 = api >= EF_VK_API(1, 1) ? (ef_pfn_props2)gipa(inst, "vkGetPhysicalDeviceProperties2") : NULL;
	uint32_t n = EF_VK_MAX_DEVICES;
	void *devs[EF_VK_MAX_DEVICES];
	res = enumerate ? enumerate(inst, &n, devs) : -1;
	if (res != 0 && res != 5) { // 5: VK_INCOMPLETE, more devices than room
		r->stage = 4;
		r->result = res;
		if (destroy) destroy(inst, NULL);
		return;
	}
	for (uint32_t i = 0; i < n && props; i++) {
		ef_vk_props p;
		memset(&p, 0, sizeof(p));
		props(devs[i], &p);
		ef_vk_dev *d = &r->devices[r->count++];
		d->apiVersion = p.apiVersion;
		d->driverVersion = p.driverVersion;
		d->vendorID = p.vendorID;
		d->deviceID = p.deviceID;
		d->type = p.deviceType;
		memcpy(d->name, p.deviceName, sizeof(d->name));
		d->name[sizeof(d->name) - 1] = 0;
		// Driver name and version string: core in Vulkan 1.2.
		if (props2 && p.apiVersion >= EF_VK_API(1, 2)) {
			ef_vk_driver_props dp;
			memset(&dp, 0, sizeof(dp));
			dp.sType = EF_VK_STYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES;
			ef_vk_props2 p2;
			memset(&p2, 0, sizeof(p2));
			p2.sType = EF_VK_STYPE_PHYSICAL_DEVICE_PROPERTIES_2;
			p2.pNext = &dp;
			props2(devs[i], &p2);
			d->driverID = dp.driverID;
			memcpy(d->driverName, dp.driverName, sizeof(d->driverName));
			d->driverName[sizeof(d->driverName) - 1] = 0;
			memcpy(d->driverInfo, dp.driverInfo, sizeof(d->driverInfo));
			d->driverInfo[sizeof(d->driverInfo) - 1] = 0;
		}
	}
	if (destroy) destroy(inst, NULL);
}

// ef_icd_check opens a Vulkan driver (ICD) library as the loader does and
// asks it for vkCreateInstance: 0 ok, 1 the library does not load (err says
// why), 2 it exports no vk_icdGetInstanceProcAddr, 3 it loads but gives no
// vkCreateInstance (what the loader reports as "Could not get
// 'vkCreateInstance'", e.g. NVIDIA's libGLX_nvidia.so.0 without libglvnd).
static int ef_icd_check(const char *path, char *err, size_t errlen) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *e = dlerror();
		snprintf(err, errlen, "%s", e ? e : "dlopen failed");
		return 1;
	}
	ef_pfn_gipa gipa = (ef_pfn_gipa)dlsym(h, "vk_icdGetInstanceProcAddr");
	if (!gipa) return 2;
	ef_pfn_negotiate negotiate = (ef_pfn_negotiate)dlsym(h, "vk_icdNegotiateLoaderICDInterfaceVersion");
	if (negotiate) {
		uint32_t v = 5;
		negotiate(&v);
	}
	if (!gipa(NULL, "vkCreateInstance")) return 3;
	return 0;
}
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"
)

// Adapter describes the GPU a WebGPU session runs on, as the Vulkan loader
// reports it. ONNX Runtime 1.24.1 has no API that returns the adapter Dawn
// picked (its WebGPU provider keeps wgpu::AdapterInfo to itself and logs
// only pointers), so eyeflow asks the Vulkan loader, the layer Dawn itself
// uses on Linux, for the device Dawn's high-performance preference ranks
// first: a discrete GPU, else an integrated one, else a virtual one, else
// anything else. On a host with one GPU the two cannot differ.
type Adapter struct {
	// Name is the device name ("NVIDIA H200").
	Name string `json:"name"`
	// Vendor is the vendor's name when the PCI id is a known one, else its id.
	Vendor   string `json:"vendor"`
	VendorID uint32 `json:"vendor_id"`
	DeviceID uint32 `json:"device_id"`
	// Type is "discrete GPU", "integrated GPU", "virtual GPU", "CPU" (a
	// software rasteriser such as llvmpipe) or "other".
	Type string `json:"type"`
	// Backend is the graphics API Dawn runs on ("vulkan").
	Backend string `json:"backend"`
	// Driver is the driver's name and version ("NVIDIA 580.95.05").
	Driver string `json:"driver"`
	// API is the Vulkan version the driver offers.
	API string `json:"api"`
}

func (a Adapter) String() string {
	if a.Name == "" {
		return ""
	}
	s := fmt.Sprintf("%s (%s, %s, %s", a.Name, a.Vendor, a.Type, a.Backend)
	if a.Driver != "" {
		s += ", " + a.Driver
	}
	return s + ")"
}

// Software reports whether the device is a CPU rasteriser, not a GPU.
func (a Adapter) Software() bool { return a.Type == "CPU" }

// VulkanReport is what the Vulkan loader says about this host.
type VulkanReport struct {
	// Loader is the loader's Vulkan version, "" when it is not installed.
	Loader string `json:"loader,omitempty"`
	// Devices are the physical devices it enumerates, in its order.
	Devices []Adapter `json:"devices"`
	// Problem says why no device is listed ("" when some are).
	Problem string `json:"problem,omitempty"`
}

// Preferred is the device Dawn's high-performance preference picks, if any.
func (r VulkanReport) Preferred() (Adapter, bool) {
	rank := map[string]int{"discrete GPU": 0, "integrated GPU": 1, "virtual GPU": 2, "other": 3, "CPU": 4}
	best, ok := Adapter{}, false
	for _, d := range r.Devices {
		if !ok || rank[d.Type] < rank[best.Type] {
			best, ok = d, true
		}
	}
	return best, ok
}

// ProbeVulkan asks the Vulkan loader (libvulkan.so.1, opened at run time)
// for its devices. It never fails: what goes wrong is the report's Problem.
func ProbeVulkan() VulkanReport {
	var r C.ef_vk_probe_result
	C.ef_vk_probe(&r)
	rep := VulkanReport{}
	switch r.stage {
	case 1:
		rep.Problem = "no Vulkan loader (libvulkan.so.1): " + C.GoString(&r.err[0])
		return rep
	case 2:
		rep.Problem = "libvulkan.so.1 loaded but exports no vkGetInstanceProcAddr/vkCreateInstance"
		return rep
	}
	rep.Loader = vkVersion(uint32(r.loaderVersion))
	switch r.stage {
	case 3:
		rep.Problem = fmt.Sprintf("vkCreateInstance failed: %s", vkResult(int32(r.result)))
		return rep
	case 4:
		rep.Problem = fmt.Sprintf("vkEnumeratePhysicalDevices failed: %s", vkResult(int32(r.result)))
		return rep
	}
	for i := range int(r.count) {
		d := r.devices[i]
		a := Adapter{
			Name:     C.GoString(&d.name[0]),
			VendorID: uint32(d.vendorID),
			DeviceID: uint32(d.deviceID),
			Type:     vkDeviceType(int32(d._type)),
			Backend:  "vulkan",
			API:      vkVersion(uint32(d.apiVersion)),
		}
		a.Vendor = vendorName(a.VendorID)
		a.Driver = strings.TrimSpace(C.GoString(&d.driverName[0]) + " " + C.GoString(&d.driverInfo[0]))
		rep.Devices = append(rep.Devices, a)
	}
	if len(rep.Devices) == 0 {
		rep.Problem = "the Vulkan loader lists no device"
	}
	return rep
}

// ICD is one Vulkan driver manifest the loader would read.
type ICD struct {
	// Manifest is the JSON file.
	Manifest string `json:"manifest"`
	// Library is the driver library it names.
	Library string `json:"library,omitempty"`
	// Problem says why the loader could not use it ("" when it can).
	Problem string `json:"problem,omitempty"`
}

// VulkanICDs lists the driver manifests the Vulkan loader reads ($VK_DRIVER_FILES
// or $VK_ICD_FILENAMES when set, else the standard folders) and checks each
// driver library as the loader would: it loads, and it hands out
// vkCreateInstance. It opens those libraries in this process, so it is for
// diagnostics (`eyeflow doctor`), not for a serving process. getenv is
// the caller's view of the environment (the loader's variables).
func VulkanICDs(getenv func(string) string) []ICD {
	var files []string
	list := getenv("VK_DRIVER_FILES")
	if list == "" {
		list = getenv("VK_ICD_FILENAMES")
	}
	if list != "" {
		for _, p := range filepath.SplitList(list) {
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				files = append(files, jsonFiles(p)...)
			} else {
				files = append(files, p)
			}
		}
	} else {
		for _, dir := range icdDirs(getenv) {
			files = append(files, jsonFiles(dir)...)
		}
	}
	var out []ICD
	for _, f := range files {
		out = append(out, checkICD(f))
	}
	return out
}

// icdDirs are the loader's standard manifest folders, in its order.
func icdDirs(getenv func(string) string) []string {
	var dirs []string
	home := getenv("HOME")
	cfg := getenv("XDG_CONFIG_HOME")
	if cfg == "" && home != "" {
		cfg = filepath.Join(home, ".config")
	}
	cfgDirs := getenv("XDG_CONFIG_DIRS")
	if cfgDirs == "" {
		cfgDirs = "/etc/xdg"
	}
	data := getenv("XDG_DATA_HOME")
	if data == "" && home != "" {
		data = filepath.Join(home, ".local", "share")
	}
	dataDirs := getenv("XDG_DATA_DIRS")
	if dataDirs == "" {
		dataDirs = "/usr/local/share:/usr/share"
	}
	add := func(base string) {
		if base != "" {
			dirs = append(dirs, filepath.Join(base, "vulkan", "icd.d"))
		}
	}
	add(cfg)
	for _, d := range filepath.SplitList(cfgDirs) {
		add(d)
	}
	add("/etc")
	add(data)
	for _, d := range filepath.SplitList(dataDirs) {
		add(d)
	}
	return dirs
}

func jsonFiles(dir string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	return m
}

func checkICD(manifest string) ICD {
	icd := ICD{Manifest: manifest}
	data, err := os.ReadFile(manifest)
	if err != nil {
		icd.Problem = err.Error()
		return icd
	}
	var m struct {
		ICD struct {
			LibraryPath string `json:"library_path"`
		} `json:"ICD"`
	}
	if err := json.Unmarshal(data, &m); err != nil || m.ICD.LibraryPath == "" {
		icd.Problem = "not a Vulkan ICD manifest (no ICD.library_path)"
		return icd
	}
	lib := m.ICD.LibraryPath
	if strings.Contains(lib, "/") && !filepath.IsAbs(lib) {
		lib = filepath.Join(filepath.Dir(manifest), lib)
	}
	icd.Library = lib
	cpath := C.CString(lib)
	defer C.free(unsafe.Pointer(cpath))
	var buf [512]C.char
	switch C.ef_icd_check(cpath, &buf[0], C.size_t(len(buf))) {
	case 1:
		icd.Problem = "does not load: " + C.GoString(&buf[0])
	case 2:
		icd.Problem = "loads, but exports no vk_icdGetInstanceProcAddr"
	case 3:
		icd.Problem = "loads, but gives no vkCreateInstance (NVIDIA's libGLX_nvidia.so.0 does this without the GL vendor-neutral libraries: libglvnd0 libglx0 libegl1 libgl1 libopengl0 libgles2)"
	}
	return icd
}

func vkVersion(v uint32) string {
	return fmt.Sprintf("%d.%d.%d", v>>22&0x7f, v>>12&0x3ff, v&0xfff)
}

func vkDeviceType(t int32) string {
	switch t {
	case 1:
		return "integrated GPU"
	case 2:
		return "discrete GPU"
	case 3:
		return "virtual GPU"
	case 4:
		return "CPU"
	}
	return "other"
}

func vkResult(r int32) string {
	names := map[int32]string{
		-1: "VK_ERROR_OUT_OF_HOST_MEMORY", -2: "VK_ERROR_OUT_OF_DEVICE_MEMORY", -3: "VK_ERROR_INITIALIZATION_FAILED",
		-6: "VK_ERROR_LAYER_NOT_PRESENT", -7: "VK_ERROR_EXTENSION_NOT_PRESENT", -9: "VK_ERROR_INCOMPATIBLE_DRIVER (no usable Vulkan driver)",
	}
	if n, ok := names[r]; ok {
		return n
	}
	return fmt.Sprintf("VkResult %d", r)
}

// vendorName names the PCI vendor ids Vulkan drivers report.
func vendorName(id uint32) string {
	switch id {
	case 0x10de:
		return "NVIDIA"
	case 0x1002:
		return "AMD"
	case 0x8086:
		return "Intel"
	case 0x13b5:
		return "ARM"
	case 0x5143:
		return "Qualcomm"
	case 0x14e4:
		return "Broadcom"
	case 0x1010:
		return "Imagination"
	case 0x106b:
		return "Apple"
	case 0x10005:
		return "Mesa"
	case 0x1ae0:
		return "Google"
	}
	return fmt.Sprintf("0x%04x", id)
}

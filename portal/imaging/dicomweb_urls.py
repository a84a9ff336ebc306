"""URL routes of the DICOMweb server (PS3.18) under /dicomweb/: QIDO-RS, WADO-RS and STOW-RS resources."""
from django.urls import re_path

from portal.imaging import dicomweb_views as views

UID = r"[0-9][0-9.]{0,63}"
ST = rf"studies/(?P<study_uid>{UID})"
SE = rf"{ST}/series/(?P<series_uid>{UID})"
IN = rf"{SE}/instances/(?P<sop_uid>{UID})"

urlpatterns = [
    re_path(r"^studies/?$", views.studies, name="dicomweb-studies"),
    re_path(r"^series/?$", views.search_series, name="dicomweb-series-search"),
    re_path(r"^instances/?$", views.search_instances, name="dicomweb-instances-search"),
    re_path(rf"^{ST}/?$", views.study, name="dicomweb-study"),
    re_path(rf"^{ST}/metadata/?$", views.study_metadata, name="dicomweb-study-metadata"),
    re_path(rf"^{ST}/series/?$", views.search_series, name="dicomweb-study-series"),
    re_path(rf"^{ST}/instances/?$", views.search_instances, name="dicomweb-study-instances"),
    re_path(rf"^{SE}/?$", views.series, name="dicomweb-series"),
    re_path(rf"^{SE}/metadata/?$", views.series_metadata, name="dicomweb-series-metadata"),
    re_path(rf"^{SE}/instances/?$", views.search_instances, name="dicomweb-series-instances"),
    re_path(rf"^{IN}/?$", views.instance, name="dicomweb-instance"),
    re_path(rf"^{IN}/metadata/?$", views.instance_metadata, name="dicomweb-instance-metadata"),
    re_path(rf"^{IN}/rendered/?$", views.rendered, name="dicomweb-instance-rendered"),
    re_path(rf"^{IN}/frames/(?P<frame_list>[^/]+)/?$", views.frames, name="dicomweb-frames"),
    re_path(rf"^{IN}/frames/(?P<frame_number>[^/]+)/rendered/?$", views.rendered, name="dicomweb-frame-rendered"),
    re_path(rf"^{IN}/bulkdata/(?P<tag>[0-9A-Fa-f]{{8}})/?$", views.bulkdata, name="dicomweb-bulkdata"),
]

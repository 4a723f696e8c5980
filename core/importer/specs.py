"""Import column definitions per kind: keys, Chinese names, required flags, help text and length limits."""

from __future__ import annotations

from typing import NamedTuple

from core.errors import DomainError

KINDS = ("products", "warehouses", "users", "opening")
KIND_ZH = {"products": "商品", "warehouses": "仓库", "users": "用户", "opening": "期初库存"}


class Column(NamedTuple):
    """One import column: English key (the contract), Chinese name, required flag and help text."""

    key: str
    zh: str
    required: bool
    help_zh: str


_BOOL_HELP = "填 是 或 否（也可用 true/false、1/0、y/n、yes/no）"

PRODUCT_COLUMNS: list[Column] = [
    Column("sku", "SKU编码", True, "商品唯一编码，已存在的 SKU 会被更新"),
    Column("name", "商品名称", True, "商品名称"),
    Column("barcode", "条码", False, "商品条码，必须唯一；请把该列设为文本格式，避免 Excel 变成科学计数法"),
    Column("category", "分类", False, "商品分类，如 原料、包材、成品"),
    Column("stock_unit", "库存单位", True, "库存与出入库计量的最小单位，如 kg、瓶、个"),
    Column("purchase_unit", "采购单位", False, "采购时用的单位，如 箱、桶、袋；留空表示与库存单位相同"),
    Column("purchase_factor", "换算系数", False,
           "1 个采购单位等于多少库存单位，必须是正整数（如 1箱=24瓶 填 24）；采购单位与库存单位不同时必填"),
    Column("shelf_life_days", "保质期天数", False, "保质期（天），非负整数；留空表示不管理保质期"),
    Column("batch_tracked", "批次管理", False, "是否按批次管理；" + _BOOL_HELP + "；留空为 否"),
    Column("lead_time_days", "采购提前期天数", False, "从下单到到货的天数，非负整数；留空为 0"),
    Column("buffer_days", "缓冲天数", False, "安全库存额外覆盖的天数，非负整数；留空为 0"),
    Column("moq", "最小起订量", False, "最小起订量（按库存单位），≥0 的数字；留空为 0"),
    Column("pack_size", "包装规格", False, "采购数量按此倍数取整（按库存单位），≥0 的数字；留空为 1"),
    Column("auto_replenish", "自动补货", False, "是否参与每日自动采购申请；" + _BOOL_HELP + "；留空为 否"),
    Column("purchaser", "采购负责人", False, "负责该商品采购的用户姓名，必须是已导入的用户；可留空"),
]

WAREHOUSE_COLUMNS: list[Column] = [
    Column("code", "仓库编码", True, "仓库或门店的唯一编码，如 CW、S01；已存在的编码会被更新"),
    Column("name", "仓库名称", True, "仓库或门店名称"),
    Column("allow_negative", "允许负库存", False, "是否允许负库存；" + _BOOL_HELP + "；留空为 否"),
    Column("negative_floor", "负库存下限", False, "允许负库存时最低可到多少，填 0 或负数（如 -5）；留空为 0"),
    Column("ships_to_stores", "可直发门店", False,
           "能否直接调拨到门店（类型为门店的仓库）；" + _BOOL_HELP + "；留空为 是"),
    Column("kind", "类型", False, "中央仓 / 门店 / 其他（也可填 central / store / other）；留空为 其他"),
]

USER_COLUMNS: list[Column] = [
    Column("name", "姓名", True, "用户姓名，必须唯一；已存在的姓名会被更新"),
    Column("wecom_user_id", "企业微信ID", False, "企业微信通讯录中的 UserID，必须唯一；可留空"),
    Column("dingtalk_staff_id", "钉钉ID", False, "钉钉通讯录中的 userid（staffId），必须唯一；可留空"),
    Column("department", "部门", False, "所在部门"),
    Column("roles", "角色", True,
           "一个或多个角色，用逗号分隔：warehouse（库管）、purchasing（采购）、sales（销售）、manager（主管）、"
           "admin（管理员），也可直接写中文"),
]

OPENING_COLUMNS: list[Column] = [
    Column("sku", "SKU编码", True, "商品 SKU，必须已在商品档案中"),
    Column("warehouse", "仓库编码", True, "仓库或门店编码（或名称），必须已在仓库档案中"),
    Column("qty", "数量", True, "期初数量，必须大于 0；按「单位」列的单位计"),
    Column("unit", "单位", True, "数量的单位：该商品的库存单位或采购单位。必填，不会默认为最小单位"),
    Column("batch", "批次号", False, "批次号；批次管理的商品必填"),
    Column("expiry", "到期日", False, "批次到期日，格式 YYYY-MM-DD（如 2027-05-01），不能早于今天；需同时填写批次号"),
    Column("unit_cost", "单位成本", False, "每个「单位」的成本（元），≥0；可留空"),
]

COLUMNS: dict[str, list[Column]] = {
    "products": PRODUCT_COLUMNS,
    "warehouses": WAREHOUSE_COLUMNS,
    "users": USER_COLUMNS,
    "opening": OPENING_COLUMNS,
}


# Column width limits of the database (longer values would fail on PostgreSQL).
_MAXLEN: dict[str, dict[str, int]] = {
    "products": {"sku": 64, "name": 200, "barcode": 64, "category": 64, "stock_unit": 16, "purchase_unit": 16,
                 "purchaser": 64},
    "warehouses": {"code": 32, "name": 100},
    "users": {"name": 64, "wecom_user_id": 64, "dingtalk_staff_id": 64, "department": 64},
    "opening": {"batch": 64},
    "customers": {"code": 32, "name": 100},
    "suppliers": {"code": 32, "name": 100},
}


_EXTRA_COLUMNS: dict[str, list[Column]] = {
    "customers": [Column("code", "客户编码", True, "客户编码"), Column("name", "客户名称", True, "客户名称"),
                  Column("strategic", "战略客户", False, "是否战略客户；" + _BOOL_HELP)],
    "suppliers": [Column("code", "供应商编码", True, "供应商编码"), Column("name", "供应商名称", True, "供应商名称")],
}


def header(key: str, zh: str) -> str:
    """The template header of a column, e.g. '库存单位 (stock_unit)'."""
    return f"{zh} ({key})"


def _columns(kind: str) -> list[Column]:
    if kind not in COLUMNS:
        raise DomainError("IMPORT_KIND", f"未知的导入类型「{kind}」",
                          "可用类型：" + "、".join(f"{k}（{KIND_ZH[k]}）" for k in KINDS), {"kind": kind})
    return COLUMNS[kind]
